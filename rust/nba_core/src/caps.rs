//! Volume caps (Pega's volume constraints): per-run limits on how many decisions a scope may
//! take, settled across all customers by the global greedy of DESIGN.md §3 or, on request, by
//! the Lagrangian allocation of [`crate::allocate`].
//!
//! A scope is `all`, or one value of one field: `channel:NAME`, `action:ID`, `group:NAME`,
//! `issue:NAME`. Every candidate has exactly one value per field, so it lies in at most one cap
//! per kind of scope: at most five caps in all, which [`CapSlots`] holds without allocating.

use std::collections::HashMap;

use crate::config_err;
use crate::error::Result;
use crate::history::{Codes, NO_CODE};

/// What a cap limits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CapScope {
    /// Every decision of the run.
    All,
    /// Decisions on one channel.
    Channel(String),
    /// Decisions of one action.
    Action(String),
    /// Decisions of one group.
    Group(String),
    /// Decisions of one issue.
    Issue(String),
}

impl CapScope {
    /// Parses `all`, `channel:NAME`, `action:ID`, `group:NAME` or `issue:NAME`.
    pub fn parse(text: &str) -> Result<Self> {
        if text == "all" {
            return Ok(Self::All);
        }
        let expected =
            "expected \"all\", \"channel:NAME\", \"action:ID\", \"group:NAME\" or \"issue:NAME\"";
        let Some((kind, name)) = text.split_once(':') else {
            return Err(config_err!("caps: unknown scope {text:?}: {expected}"));
        };
        if name.is_empty() {
            return Err(config_err!("caps: scope {text:?} names nothing after ':'"));
        }
        let name = name.to_owned();
        match kind {
            "channel" => Ok(Self::Channel(name)),
            "action" => Ok(Self::Action(name)),
            "group" => Ok(Self::Group(name)),
            "issue" => Ok(Self::Issue(name)),
            _ => Err(config_err!("caps: unknown scope {text:?}: {expected}")),
        }
    }

    /// The scope as users write it.
    pub fn text(&self) -> String {
        match self {
            Self::All => "all".to_owned(),
            Self::Channel(n) => format!("channel:{n}"),
            Self::Action(n) => format!("action:{n}"),
            Self::Group(n) => format!("group:{n}"),
            Self::Issue(n) => format!("issue:{n}"),
        }
    }

    /// The slot of [`CapSlots`] this kind of scope fills, and the code field it matches
    /// (`None` for `all`), in the order of [`crate::history::FIELDS`].
    fn slot(&self) -> (usize, Option<(usize, &str)>) {
        match self {
            Self::All => (0, None),
            Self::Action(n) => (1, Some((0, n))),
            Self::Group(n) => (2, Some((1, n))),
            Self::Issue(n) => (3, Some((2, n))),
            Self::Channel(n) => (4, Some((3, n))),
        }
    }
}

/// One volume cap.
#[derive(Debug, Clone)]
pub struct VolumeCap {
    /// What it limits.
    pub scope: CapScope,
    /// The most decisions the scope may take in one run (0 allows none).
    pub max: u64,
}

/// How decisions are allocated under the caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Allocation {
    /// The global greedy of DESIGN.md §3 (Pega's volume constraints).
    #[default]
    Greedy,
    /// Maximise the total priority under the caps (Lagrangian prices, repaired, never worse
    /// than greedy).
    Optimal,
}

/// Checks a set of caps: scopes unique.
pub fn validate_caps(caps: &[VolumeCap]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for cap in caps {
        if !seen.insert(&cap.scope) {
            return Err(config_err!(
                "caps: scope {:?} is capped twice",
                cap.scope.text()
            ));
        }
    }
    Ok(())
}

/// Sentinel of an empty slot.
pub(crate) const NO_CAP: u32 = u32::MAX;

/// The caps one candidate lies in, by kind of scope (`NO_CAP` where none).
pub(crate) type CapSlots = [u32; 5];

/// Caps compiled against the run's codes.
#[derive(Debug, Clone)]
pub(crate) struct CompiledCaps {
    /// Per cap: its max.
    pub max: Vec<u64>,
    /// Per cap: its scope text (the funnel's `capped:SCOPE`).
    pub names: Vec<String>,
    /// Per cap: its kind of scope, as its position in [`CapSlots`].
    pub kind: Vec<usize>,
    all: u32,
    /// Per field (action, group, issue, channel): code → cap.
    by_code: [HashMap<u32, u32>; 4],
}

impl CompiledCaps {
    /// Compiles `caps`; a scope whose value no code has matches nothing.
    pub fn new(caps: &[VolumeCap], codes: &Codes) -> Self {
        let mut all = NO_CAP;
        let mut by_code: [HashMap<u32, u32>; 4] = Default::default();
        for (c, cap) in caps.iter().enumerate() {
            match cap.scope.slot() {
                (_, None) => all = c as u32,
                (_, Some((field, name))) => {
                    let code = codes.get(field, name);
                    if code != NO_CODE {
                        by_code[field].insert(code, c as u32);
                    }
                }
            }
        }
        Self {
            max: caps.iter().map(|c| c.max).collect(),
            names: caps.iter().map(|c| c.scope.text()).collect(),
            kind: caps.iter().map(|c| c.scope.slot().0).collect(),
            all,
            by_code,
        }
    }

    /// Number of caps.
    pub fn len(&self) -> usize {
        self.max.len()
    }

    /// The caps a candidate with codes `[action, group, issue, channel]` lies in.
    pub fn slots(&self, codes: &[u32; 4]) -> CapSlots {
        let mut slots = [NO_CAP; 5];
        slots[0] = self.all;
        for field in 0..4 {
            if let Some(&c) = self.by_code[field].get(&codes[field]) {
                // Slots 1..=4 are action, group, issue, channel: the fields' order.
                slots[field + 1] = c;
            }
        }
        slots
    }
}

/// Parses caps given as (scope text, max) pairs, as the bindings receive them.
pub fn parse_caps(caps: &[(String, i64)]) -> Result<Vec<VolumeCap>> {
    let caps = caps
        .iter()
        .map(|(scope, max)| {
            let scope = CapScope::parse(scope)?;
            let max = u64::try_from(*max).map_err(|_| {
                config_err!("caps: {:?} has max {max}, which must be >= 0", scope.text())
            })?;
            Ok(VolumeCap { scope, max })
        })
        .collect::<Result<Vec<_>>>()?;
    validate_caps(&caps)?;
    Ok(caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_print() {
        for text in [
            "all",
            "channel:email",
            "action:a:b",
            "group:Cards",
            "issue:Sales",
        ] {
            assert_eq!(CapScope::parse(text).unwrap().text(), text);
        }
        for bad in ["", "everything", "segment:x", "channel:", "Channel:email"] {
            assert!(CapScope::parse(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn negative_max_and_duplicates_are_config_errors() {
        let err = parse_caps(&[("all".into(), -1)]).unwrap_err();
        assert!(err.to_string().contains(">= 0"), "{err}");
        let err = parse_caps(&[("all".into(), 1), ("all".into(), 2)]).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
    }

    #[test]
    fn a_candidate_lies_in_one_cap_per_kind() {
        let mut codes = Codes::default();
        codes.intern(0, "a");
        codes.intern(1, "g");
        codes.intern(2, "i");
        codes.intern(3, "email");
        let caps = parse_caps(&[
            ("channel:email".into(), 5),
            ("all".into(), 9),
            ("action:a".into(), 1),
            ("group:nothing".into(), 1),
        ])
        .unwrap();
        let compiled = CompiledCaps::new(&caps, &codes);
        assert_eq!(compiled.slots(&[0, 0, 0, 0]), [1, 2, NO_CAP, NO_CAP, 0]);
    }
}
