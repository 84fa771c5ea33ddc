"""Type stubs of the private native module `nba_fast._core` (built from rust/nba_py)."""

from typing import Any, final

import numpy as np

__all__ = [
    "BUILD_PROFILE",
    "DEBUG_BUILD",
    "ConfigError",
    "DataError",
    "Engine",
    "NbaFastError",
    "RuleError",
    "SchemaError",
    "__version__",
]

__version__: str
DEBUG_BUILD: bool
BUILD_PROFILE: str

class NbaFastError(Exception): ...
class SchemaError(NbaFastError): ...
class RuleError(NbaFastError): ...
class ConfigError(NbaFastError): ...
class DataError(NbaFastError): ...

@final
class Engine:
    def __new__(
        cls,
        catalog: Any,
        *,
        policies: list[Any] = ...,
        caps: list[tuple[str, int]] = ...,
        allocation: str = "greedy",
        max_per_customer: int = 1,
        batch_rows: int = 32768,
        threads: int | None = None,
    ) -> Engine: ...
    def decide(
        self,
        customers: Any,
        *,
        now_us: int,
        propensities: Any = None,
        propensity_matrix: np.ndarray[Any, np.dtype[np.float64]] | None = None,
        propensity_columns: list[tuple[str, str]] | None = None,
        do_not_contact: Any = None,
        history: Any = None,
    ) -> dict[str, Any]: ...
    def arbitrate(self, candidates: Any, *, now_us: int, history: Any = None) -> dict[str, Any]: ...
    def __len__(self) -> int: ...
