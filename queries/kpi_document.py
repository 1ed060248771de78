"""The KPI document: what `queries.kpis.collect_kpis` returns, `q2c kpis --json` prints, and
the CLI's tables and the console's overview render (docs/kpis.md describes each field).
Plain dictionaries, typed: they serialise to JSON as they are."""

from __future__ import annotations

from typing import TypedDict

from q2c.vocabulary import ExceptionStatus, Impact


class Window(TypedDict):
    start: str  # ISO 8601
    end: str
    seconds: int


# Count and percentiles (ms) of one stage pair's latencies in the window (`from` is a
# keyword, hence the functional form).
Latency = TypedDict(
    "Latency",
    {
        "from": str,
        "to": str,
        "count": int,
        "p50_ms": float | None,
        "p90_ms": float | None,
        "p95_ms": float | None,
        "p99_ms": float | None,
    },
)


class Headline(Latency):
    """A latency the overview and `q2c kpis` lead with (sla.yaml `headlines`)."""

    title: str
    process: str
    percentiles: list[int]


class Reconciliation(TypedDict):
    checked: int
    matched: int
    accuracy: float | None


class Accuracy(TypedDict):
    """Keys checked and matched, and matched / checked (None when none was checked)."""

    checked: int
    matched: int
    accuracy: float | None


class LatestRecordsRun(Accuracy):
    run_id: int
    started_at: str  # ISO 8601


class WindowRecordsRuns(Accuracy):
    """The succeeded runs started in the KPI window, their keys summed (a key checked by
    two runs counts twice); `failed`: the runs that failed in it."""

    runs: int
    failed: int


class PairAccuracy(TypedDict):
    sources: list[str]  # two source names, in order
    latest: Accuracy | None
    window: Accuracy


class RecordsReconciliation(TypedDict):
    """A reconciliation of reconcile.yaml: the records compared across the systems of
    record (not the telemetry's own check, ProcessKpis.reconciliation)."""

    latest: LatestRecordsRun | None  # its latest succeeded run, in the window or before
    window: WindowRecordsRuns
    pairs: list[PairAccuracy]


Objective = TypedDict(
    "Objective",
    {"from": str, "to": str, "latency_ms": float, "target": float, "period_days": float},
)


class BurnAlert(TypedDict):
    long: str
    short: str
    factor: float
    severity: str  # page or ticket
    firing: bool


class BadEvents(TypedDict):
    """An objective's bad events by cause."""

    slow: int  # completed, over the latency objective
    stalled: int  # stalled before reaching the objective's last stage


class SloWindow(TypedDict):
    """An objective's events in the KPI window (not its own period)."""

    seconds: int
    good: int
    total: int
    compliance: float | None
    bad: BadEvents


class Slo(TypedDict):
    objective: Objective
    good: int  # over the objective's period, as are total, compliance and bad
    total: int
    compliance: float | None
    bad: BadEvents
    window: SloWindow
    error_budget_remaining: float | None
    burn_rates: dict[str, float | None]
    alerts: list[BurnAlert]
    alert_state: str  # ok, ticket or page


class ProcessKpis(TypedDict):
    started: int
    completed: int
    throughput_per_hour: float
    errors: int
    hops: list[Latency]
    reconciliation: Reconciliation
    sla: Slo


class ExceptionKpis(TypedDict):
    open: int
    by_status: dict[ExceptionStatus, int]
    open_by_impact: dict[Impact, int]
    open_by_aging: dict[str, int]
    overdue: int
    auto_resolved_pct: float | None


class ReplayKpis(TypedDict):
    requested: int
    succeeded: int
    failed: int
    success_rate: float | None


class AmountAtRisk(TypedDict):
    process: str
    impact: Impact
    currency: str | None
    amount: float


class Blocking(TypedDict):
    currency: str
    amount: float


class MoneyAtRisk(TypedDict):
    by_process_impact: list[AmountAtRisk]
    erp_bound_this_month: list[Blocking]


class KpiDocument(TypedDict):
    window: Window
    latency: dict[str, Headline]
    processes: dict[str, ProcessKpis]
    exceptions: ExceptionKpis
    replays: ReplayKpis
    money_at_risk: MoneyAtRisk
    records_reconciliation: dict[str, RecordsReconciliation]


class ComparisonKpis(TypedDict):
    """The figures of a past window that the overview compares the current one with."""

    latency: dict[str, Headline]
    auto_resolved_pct: float | None
    replays: ReplayKpis
