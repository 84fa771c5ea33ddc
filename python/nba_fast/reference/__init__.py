"""The pure-Python reference engine: the readable statement of nba_fast's semantics.

`Engine` here has the same surface and gives the same answers as `nba_fast.Engine`, in plain
loops and dicts (pyarrow only to read inputs and build outputs). It is the oracle the property
tests compare the Rust engine with, and the baseline of the benchmarks: clear before fast.

Modules: `rules` (tokenizer and parser of the SQL subset), `bind` (column resolution and type
checking), `evaluate` (three-valued evaluation), `inputs` (reading and checking Arrow inputs),
`contact` (contactability), `policies` (contact policies and the interaction history),
`output` (the decisions and funnel tables), `engine` (the stages).
"""

from nba_fast.reference.engine import Engine, Result

__all__ = ["Engine", "Result"]
