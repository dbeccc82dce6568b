"""The conformance prober: wire scenarios run against any SCP, judged by PS3.8 and PS3.7.

Each :class:`Scenario` drives a :class:`~dicomwire.testing.rawpeer.RawPeer` against the
SCP, compares what the SCP does with what the standard requires, and yields a
:class:`Finding` (pass, fail or skip, with the observation in words). After every scenario
a fresh association with a C-ECHO must still succeed: the SCP survived. The suite covers

- PS3.8 Table 9-10 in Sta2 (before the A-ASSOCIATE-RQ: AA-1, AA-2) and Sta6 (established:
  AA-8, AA-3), invalid PDUs (Evt19, A-ABORT reasons of Table 9-26), PDU lengths above the
  negotiated maximum (PS3.8 Annex D.1) and near 2^32 (§9.3.1);
- association negotiation (§9.3.2-9.3.4): protocol version, application context, called
  and calling AE titles (A-ASSOCIATE-RJ result, source and reason of Table 9-21), abstract
  and transfer syntax results (Table 9-18), AC content, and the user information answers
  of PS3.7 Annex D.3.3 (role selection, user identity, asynchronous operations window);
- P-DATA (§9.3.5, Annex E): PDVs split at many boundaries, TCP writes of single bytes,
  command and data set PDVs in one PDU, PDVs on an invalid or rejected context ID;
- release (§7.2; Sta8), ARTIM expiry (Evt18), truncated PDUs and resets (Evt17), A-ABORT
  from the requestor (Evt16).

The scenarios are data: :data:`SCENARIOS` (:mod:`.scenarios`) is a table of rows, each a
name, group, title, standard clause and requirement with a stimulus (:mod:`.stimuli`) and
an expectation (:mod:`.judges`); the vocabulary is in :mod:`.model`, the connections and
observations in :mod:`.probe`. :func:`run_suite` (:mod:`.runner`) runs them and returns a
:class:`SuiteReport`; :func:`write_report` (:mod:`.report`) prints it (the only output this
package writes, to the stream given) and :meth:`SuiteReport.to_json` is the
machine-readable form for CI.
"""

from __future__ import annotations

from .model import (
    Finding,
    Judge,
    Observation,
    ProbeTarget,
    Run,
    Scenario,
    ScenarioAborted,
    ScenarioResult,
    ScenarioSkipped,
    Stimulus,
    SuiteReport,
    Verdict,
)
from .probe import Exchange, Probe
from .report import (
    format_result,
    scenario_table,
    write_footer,
    write_header,
    write_report,
    write_result,
)
from .runner import run_suite, select_scenarios
from .scenarios import SCENARIOS
from .stimuli import (
    CT_IMAGE_STORAGE,
    UNKNOWN_ABSTRACT_SYNTAX,
    UNKNOWN_APPLICATION_CONTEXT,
    UNKNOWN_PDU,
    UNKNOWN_TRANSFER_SYNTAX,
    Layout,
)

__all__ = [
    "CT_IMAGE_STORAGE",
    "SCENARIOS",
    "UNKNOWN_ABSTRACT_SYNTAX",
    "UNKNOWN_APPLICATION_CONTEXT",
    "UNKNOWN_PDU",
    "UNKNOWN_TRANSFER_SYNTAX",
    "Exchange",
    "Finding",
    "Judge",
    "Layout",
    "Observation",
    "Probe",
    "ProbeTarget",
    "Run",
    "Scenario",
    "ScenarioAborted",
    "ScenarioResult",
    "ScenarioSkipped",
    "Stimulus",
    "SuiteReport",
    "Verdict",
    "format_result",
    "run_suite",
    "scenario_table",
    "select_scenarios",
    "write_footer",
    "write_header",
    "write_report",
    "write_result",
]
