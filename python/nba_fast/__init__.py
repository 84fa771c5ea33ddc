"""nba_fast: next-best-action decisions for outbound email and SMS.

A Rust engine over Apache Arrow decides, for every customer, which message to send on which
channel, or none: eligibility rules, contactability, priority (P·V·C·L) and ranking.

>>> import nba_fast as nba
>>> issubclass(nba.RuleError, nba.NbaFastError)
True
"""

import warnings

from nba_fast import _core
from nba_fast._core import ConfigError, DataError, NbaFastError, RuleError, SchemaError
from nba_fast.api import AllocationReport, DecisionResult, Engine
from nba_fast.config import (
    Action,
    ContactPolicy,
    VolumeCap,
    load_caps,
    load_catalog,
    load_policies,
)
from nba_fast.render import TemplateError, load_treatments, render
from nba_fast.sms import sms_segments

__version__: str = _core.__version__

if _core.DEBUG_BUILD:
    warnings.warn(
        "nba_fast was built without optimisations (a debug build): fine for tests, slow for "
        "real work; build with `make build-release`",
        RuntimeWarning,
        stacklevel=2,
    )

__all__ = [
    "Action",
    "AllocationReport",
    "ConfigError",
    "ContactPolicy",
    "DataError",
    "DecisionResult",
    "Engine",
    "NbaFastError",
    "RuleError",
    "SchemaError",
    "TemplateError",
    "VolumeCap",
    "load_caps",
    "load_catalog",
    "load_policies",
    "load_treatments",
    "render",
    "sms_segments",
]
