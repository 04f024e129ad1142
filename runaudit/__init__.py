"""runaudit: audit historical LLM call logs for safety declines and degraded results counted as success.

Importing this package loads neither typer nor matplotlib; use :func:`open` for the Python API.
"""

from __future__ import annotations

__version__ = "0.1.0"

from runaudit.api import Audit, open  # noqa: E402,A004
from runaudit.errors import (  # noqa: E402
    ExitCode,
    InputFormatError,
    ReviewStateError,
    RuleConfigError,
    RunauditError,
    StoreError,
)
from runaudit.inline import (  # noqa: E402
    CallError,
    CallInfraError,
    DoneConditionError,
    Held,
    Verdict,
    check,
    check_lines,
    check_many,
    check_record,
    handle,
    hold,
    log_call,
)

__all__ = ["open", "Audit", "__version__", "check", "check_record", "check_lines", "check_many", "handle", "hold",
           "log_call", "Verdict", "Held", "CallError", "CallInfraError", "DoneConditionError", "ExitCode",
           "InputFormatError", "ReviewStateError", "RuleConfigError", "RunauditError", "StoreError"]
