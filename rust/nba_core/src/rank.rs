//! Per-customer ranking: priority descending, ties by action id in byte order.

use std::cmp::Ordering;

/// One scored candidate of a customer.
#[derive(Debug, Clone, Copy)]
pub struct Scored {
    /// Action index in the catalog (or in the run's action table).
    pub action: u32,
    /// The action's position in byte order of ids: the tie-break.
    pub tie: u32,
    /// The propensity used.
    pub propensity: f64,
    /// ((P·V)·C)·L.
    pub priority: f64,
}

/// The ranking order: higher priority first, then smaller action id.
#[inline]
pub fn rank_order(a: &Scored, b: &Scored) -> Ordering {
    // Priorities are finite (checked when scored), so partial_cmp is total here, and unlike
    // total_cmp it ties -0.0 with 0.0, which then break by action id as the semantics say.
    b.priority
        .partial_cmp(&a.priority)
        .unwrap_or(Ordering::Equal)
        .then_with(|| a.tie.cmp(&b.tie))
}

/// Moves the best `top` candidates, in rank order, to the front; returns how many there are
/// (`min(top, len)`). Partial selection: no full sort when only the first few are needed.
pub fn rank_in_place(scored: &mut [Scored], top: usize) -> usize {
    let top = top.min(scored.len());
    if top == 0 {
        return 0;
    }
    if top == 1 {
        let best = (1..scored.len()).fold(0, |best, i| {
            if rank_order(&scored[i], &scored[best]) == Ordering::Less {
                i
            } else {
                best
            }
        });
        scored.swap(0, best);
        return 1;
    }
    if top < scored.len() {
        scored.select_nth_unstable_by(top - 1, rank_order);
    }
    scored[..top].sort_unstable_by(rank_order);
    top
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(action: u32, priority: f64) -> Scored {
        Scored {
            action,
            tie: action,
            propensity: 0.5,
            priority,
        }
    }

    #[test]
    fn ties_break_by_action_order() {
        let mut v = vec![s(3, 1.0), s(1, 1.0), s(2, 2.0)];
        assert_eq!(rank_in_place(&mut v, 3), 3);
        let order: Vec<u32> = v.iter().map(|x| x.action).collect();
        assert_eq!(order, vec![2, 1, 3]);
    }

    #[test]
    fn top_one_is_the_best() {
        let mut v = vec![s(3, 1.0), s(1, 1.0), s(0, 0.5)];
        assert_eq!(rank_in_place(&mut v, 1), 1);
        assert_eq!(v[0].action, 1);
    }

    #[test]
    fn top_larger_than_len() {
        let mut v = vec![s(0, 0.1)];
        assert_eq!(rank_in_place(&mut v, 5), 1);
        assert_eq!(rank_in_place(&mut [], 5), 0);
    }
}
