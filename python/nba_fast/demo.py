"""``nba-fast demo``: U+ Bank's outbound credit-card story, phase by phase (DESIGN.md §5).

It writes generated customers, a model's propensities and one campaign file per phase under
``--out``, runs each with `nba_fast.runner.run_campaign` against ``--db`` and prints what each
phase changed, reading the answers back from the database:

1. one offer by email: Stephen John, eligible for the Standard Card, gets its email with an
   APPLY TODAY link (day 1);
2. five card offers on email and SMS: the best one per customer by P·V·C·L (day 2);
3. the contact policy "no offer email for 60 days after one within 30 days", run the next day:
   nobody emailed yesterday is emailed again (day 3);
4. a daily email cap, three months on when the cooldown is over: the best customers get the
   capped emails, others fall back to SMS;
5. the ``action_details`` table the email provider reads.

Running it again on the same database writes nothing new: every run id is already committed.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.parquet as pq

from nba_fast._core import DataError
from nba_fast.cli import ProgressBar, format_table, funnel_totals
from nba_fast.demo_data import MEAN_PROPENSITY, uplus_customers, uplus_propensities
from nba_fast.runner import RunReport, run_campaign
from nba_fast.store import Store

__all__ = ["PHASE_DAYS", "campaign_toml", "run_demo"]

PHASE_DAYS: tuple[datetime, ...] = (
    datetime(2025, 6, 2, 8, 0, tzinfo=UTC),
    datetime(2025, 6, 3, 8, 0, tzinfo=UTC),
    datetime(2025, 6, 4, 8, 0, tzinfo=UTC),
    datetime(2025, 9, 1, 8, 0, tzinfo=UTC),
)
"""The decision time of phases 1 to 4 (phase 5 only reads)."""

_HEADER = """\
# U+ Bank: outbound credit-card offers by email and SMS (written by `nba-fast demo`,
# phase {phase}; every field is described in docs/campaign.md).

[campaign]
name = "uplus-cards"
database = "{database}"
channels = ["email", "sms"]
max_per_customer = 1

[inputs]
customers = "customers.parquet"        # Parquet, CSV or Arrow IPC, relative to this file
propensities = "propensities.parquet"  # or {{ sql = "SELECT customer_id, action_id, ..." }}
"""

_ACTIONS = (
    (
        "card_standard_email",
        "email",
        120.0,
        "age >= 18 AND credit_score BETWEEN 600 AND 719 AND NOT has_credit_card",
        "StandardCardEmail",
    ),
    (
        "card_gold_email",
        "email",
        250.0,
        "age >= 21 AND credit_score >= 700 AND income >= 60000 AND NOT has_credit_card",
        "GoldCardEmail",
    ),
    (
        "card_platinum_email",
        "email",
        400.0,
        "age >= 25 AND credit_score >= 760 AND income >= 120000",
        "PlatinumCardEmail",
    ),
    (
        "card_student_sms",
        "sms",
        60.0,
        "age BETWEEN 18 AND 25 AND NOT has_credit_card",
        "StudentCardSms",
    ),
    (
        "card_cashback_sms",
        "sms",
        150.0,
        "credit_score >= 650 AND NOT opt_out_sms",
        "CashbackCardSms",
    ),
)

_POLICY = """
# Pega's contact policy: no card offer by email for 60 days after one within 30 days.
# `pending` counts: the events this runner appends for every decision it writes.
[[policy]]
name = "card_email_cooldown"
kind = "suppress"
level = "group"
channel = "email"
outcomes = ["pending", "sent"]
threshold = 1
window_days = 30
suppress_days = 60
"""

_CAP = """
# The email platform's daily volume: at most this many emails per run.
[[cap]]
scope = "channel:email"
max = {cap}
"""

_CARD_NAMES = {
    "StandardCardEmail": ("Standard", "standard"),
    "GoldCardEmail": ("Gold", "gold"),
    "PlatinumCardEmail": ("Platinum", "platinum"),
}

_EMAIL_TREATMENT = '''
[treatment.{name}]
channel = "email"
subject = "{{{{ first_name }}}}, your U+ Bank {card} Card is ready"
body = """
Dear {{{{ first_name }}}} {{{{ last_name }}}},

You are pre-approved for the U+ Bank {card} Card.
APPLY TODAY: https://uplus.example/apply/{slug}?c={{{{ customer_id }}}}

U+ Bank, Member FDIC.
"""
'''

_EMAIL_VARIANTS = '''
[[treatment.{name}.variant]]
language = "es"
subject = "{{{{ first_name }}}}, su tarjeta {card} de U+ Bank le espera"
body = """
Estimado/a {{{{ first_name }}}} {{{{ last_name }}}}:

Usted está preaprobado/a para la tarjeta {card} de U+ Bank.
SOLICÍTELA HOY (APPLY TODAY): https://uplus.example/apply/{slug}?c={{{{ customer_id }}}}

U+ Bank, miembro de la FDIC.
"""

[[treatment.{name}.variant]]
region = "NY"
body = """
Dear {{{{ first_name }}}} {{{{ last_name }}}},

You are pre-approved for the U+ Bank {card} Card.
APPLY TODAY: https://uplus.example/apply/{slug}?c={{{{ customer_id }}}}

U+ Bank, Member FDIC. New York residents: the rates and fees of this offer are disclosed
under N.Y. Banking Law § 108; a copy is at https://uplus.example/ny.
"""
'''

_SMS_TREATMENTS = '''
[treatment.StudentCardSms]
channel = "sms"
text = """U+ Bank: {{ first_name }}, the Student Card has no annual fee. \\
Apply: https://uplus.example/s/{{ customer_id }} STOP to opt out"""

[treatment.CashbackCardSms]
channel = "sms"
text = """U+ Bank: {{ first_name }}, earn 2% cash back on every purchase. \\
Apply: https://uplus.example/c/{{ customer_id }} STOP to opt out"""

[[treatment.CashbackCardSms.variant]]
language = "es"
text = """U+ Bank: {{ first_name }}, gane 2% de reembolso en cada compra. \\
Solicítela: https://uplus.example/c/{{ customer_id }} STOP para no recibir más"""
'''


def campaign_toml(phase: int, *, database: str, email_cap: int) -> str:
    """The campaign file of demo phase `phase` (1 to 4): phase 1 has the Standard Card email
    only; phase 2 all five offers; phase 3 adds the cooldown policy; phase 4 the email cap."""
    text = _HEADER.format(phase=phase, database=database)
    actions = _ACTIONS[:1] if phase == 1 else _ACTIONS
    for action_id, channel, value, rule, treatment in actions:
        text += (
            f'\n[[action]]\nid = "{action_id}"\nissue = "Sales"\ngroup = "CreditCards"\n'
            f'channel = "{channel}"\nvalue = {value}\neligibility = "{rule}"\n'
            f'treatment = "{treatment}"\n'
        )
    if phase >= 3:
        text += _POLICY
    if phase >= 4:
        text += _CAP.format(cap=email_cap)
    used = {treatment for *_, treatment in actions}
    for name, (card, slug) in _CARD_NAMES.items():
        if name in used:
            text += _EMAIL_TREATMENT.format(name=name, card=card, slug=slug)
            if name == "StandardCardEmail":  # by language, and New York's legal text
                text += _EMAIL_VARIANTS.format(name=name, card=card, slug=slug)
    if phase >= 2:
        text += _SMS_TREATMENTS
    return text


def run_demo(
    *,
    customers: int = 100_000,
    db: str = "sqlite:///nba_demo.db",
    out: str | Path = "uplus_bank",
    seed: int = 0,
    stream: TextIO | None = None,
) -> list[RunReport]:
    """Runs the U+ Bank story (see the module docstring) and prints it to `stream`.

    Returns:
        The reports of the four runs.
    """
    stream = stream or sys.stdout
    folder = Path(out)

    def say(text: str = "") -> None:
        print(text, file=stream, flush=True)

    table = uplus_customers(customers, seed)
    email_cap = max(1, customers // 20)
    files = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / "customers.parquet")
        pq.write_table(
            uplus_propensities(table, list(MEAN_PROPENSITY), seed),
            folder / "propensities.parquet",
        )
        for phase in (1, 2, 3, 4):
            path = folder / ("campaign.toml" if phase == 4 else f"phase{phase}.toml")
            path.write_text(campaign_toml(phase, database=db, email_cap=email_cap))
            files.append(path)
    except OSError as err:
        raise DataError(f"{folder}: cannot write the demo's files there: {err}") from err
    say(f"U+ Bank: {customers:,} customers and their propensities written to {folder}/;")
    say(f"campaign files {', '.join(p.name for p in files)}; database {db}.")

    reports = []
    # A bar on a terminal; elsewhere (a CI log) the phases' own lines say enough.
    bar = ProgressBar(sys.stderr) if sys.stderr.isatty() else None
    for path, now in zip(files, PHASE_DAYS, strict=True):
        reports.append(run_campaign(path, db=db, now=now, progress=bar))
    ids = [report.run_id for report in reports]

    with Store(db) as store:

        def rows(sql: str, *params: Any) -> pa.Table:
            return store.query(sql, list(params), purpose="show the demo's results")

        def one(sql: str, *params: Any) -> int:
            return int(rows(sql, *params).column(0)[0].as_py() or 0)

        p = store.param

        def funnel(run_id: str) -> dict[str, int]:
            raw = rows(f"SELECT funnel FROM runs WHERE run_id = {p(1)}", run_id).column(0)
            totals: dict[str, int] = {}
            for stage, _action, count in json.loads(raw[0].as_py() or "[]"):
                totals[stage] = totals.get(stage, 0) + count
            return totals

        def headline(phase: int, title: str, report: RunReport) -> None:
            say(f"\n=== Phase {phase}: {title}")
            say(f"run {report.run_id} (now {report.now:%Y-%m-%d %H:%M} UTC): " + _status(report))

        emailed_sql = (
            "SELECT count(*) AS n FROM action_details a JOIN action_details b "
            "ON a.customer_id = b.customer_id "
            f"WHERE a.run_id = {p(1)} AND a.channel = 'email' "
            f"AND b.run_id = {p(2)} AND b.channel = 'email'"
        )

        # Phase 1
        headline(1, "one offer by email, the Standard Card", reports[0])
        say(
            f"{one(f'SELECT count(*) FROM action_details WHERE run_id = {p(1)}', ids[0]):,} "
            "customers eligible and contactable get the Standard Card email. Stephen John's:"
        )
        stephen = rows(
            f"SELECT email, subject, body FROM action_details WHERE run_id = {p(1)} "
            "AND customer_id = 1",
            ids[0],
        ).to_pylist()
        for row in stephen:
            say(f"  To: {row['email']}\n  Subject: {row['subject']}")
            say("\n".join(f"  | {line}" for line in (row["body"] or "").strip().splitlines()))

        # Phase 2
        headline(2, "five card offers, the best per customer by P·V·C·L", reports[1])
        per_action = rows(
            "SELECT action_id, channel, count(*) AS decisions, avg(priority) AS mean_priority "
            f"FROM action_details WHERE run_id = {p(1)} GROUP BY action_id, channel "
            "ORDER BY decisions DESC",
            ids[1],
        )
        say(format_table(per_action))
        [best] = rows(
            f"SELECT action_id, priority FROM action_details WHERE run_id = {p(1)} "
            "AND customer_id = 1",
            ids[1],
        ).to_pylist() or [{"action_id": "nothing", "priority": 0.0}]
        say(
            f"Stephen John's best offer today: {best['action_id']} "
            f"(P·V·C·L {best['priority']:.2f})."
        )
        again = one(emailed_sql, ids[1], ids[0])
        say(
            f"Without a contact policy, {again:,} customers emailed on day 1 are emailed "
            "again on day 2."
        )

        # Phase 3
        headline(3, "the 60/30-day contact policy, the next day", reports[2])
        yesterday = one(
            f"SELECT count(*) FROM action_details WHERE run_id = {p(1)} AND channel = 'email'",
            ids[1],
        )
        again = one(emailed_sql, ids[2], ids[1])
        ever = one(emailed_sql, ids[2], ids[0]) + again
        suppressed = funnel(ids[2]).get("suppressed:card_email_cooldown", 0)
        say(f"{suppressed:,} email offers suppressed by card_email_cooldown.")
        say(
            f"Of the {yesterday:,} customers emailed yesterday, emailed again today: {again:,}"
            f" (any earlier email: {ever:,})."
        )
        by_channel = ", ".join(f"{c} {n:,}" for c, n in reports[2].by_channel.items())
        today = one(f"SELECT count(*) FROM action_details WHERE run_id = {p(1)}", ids[2])
        say(f"Today's decisions: {today:,} ({by_channel or 'see phase 5'}).")

        # Phase 4
        headline(4, f"a daily email cap of {email_cap:,}, three months on", reports[3])
        totals = funnel(ids[3])
        emails = one(
            f"SELECT count(*) FROM action_details WHERE run_id = {p(1)} AND channel = 'email'",
            ids[3],
        )
        say(
            f"The cooldown is over and {totals.get('top_choice', 0):,} customers have a best "
            f"offer, but the cap lets {emails:,} emails through (cap {email_cap:,}): it turned "
            f"down {totals.get('capped:channel:email', 0):,} email offers, and "
            f"{totals.get('fallback', 0):,} customers fell back to their next best offer, "
            "an SMS."
        )
        say("Funnel:")
        say(format_table(funnel_totals(_funnel_table(totals), totals.get("candidate", 0))))

        # Phase 5
        say("\n=== Phase 5: action_details, what the email and SMS provider reads")
        say(
            format_table(
                rows(
                    "SELECT run_id, channel, status, count(*) AS rows_ FROM action_details "
                    "GROUP BY run_id, channel, status ORDER BY run_id, channel"
                ).rename_columns(["run_id", "channel", "status", "rows"])
            )
        )
        say("Messages per treatment variant (by the customer's language and state):")
        say(
            format_table(
                rows(
                    "SELECT channel, variant, count(*) AS messages, max(sms_segments) AS "
                    "max_segments FROM action_details GROUP BY channel, variant "
                    "ORDER BY channel, variant"
                )
            )
        )
        history = one("SELECT count(*) FROM interaction_history WHERE outcome = 'pending'")
        say(f"interaction_history: {history:,} pending events, one per row above.")
        say("Stephen John's rows:")
        say(
            format_table(
                rows(
                    "SELECT run_id, action_id, channel, email, phone, sms_segments, status "
                    "FROM action_details WHERE customer_id = 1 ORDER BY run_id"
                )
            )
        )
        say(
            f"\nRun a phase again: nba-fast run {files[-1]} --now {PHASE_DAYS[-1].isoformat()}"
            f" --db {db}  (already committed: writes nothing)"
        )
    return reports


def _status(report: RunReport) -> str:
    if report.status == "already_committed":
        return "already in the database from an earlier demo: nothing written"
    redo = ", redone after a killed attempt" if report.resumed else ""
    return f"{report.written:,} rows written{redo}"


def _funnel_table(totals: dict[str, int]) -> pa.Table:
    return pa.table(
        {
            "stage": list(totals),
            "action_id": [""] * len(totals),
            "count": list(totals.values()),
        }
    )
