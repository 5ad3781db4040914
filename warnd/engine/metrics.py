"""Prometheus metrics, one registry per node (so tests can run several nodes in one process)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase


class Metrics:
    def __init__(self) -> None:
        self._children: dict[tuple[MetricWrapperBase, tuple[str, ...]], MetricWrapperBase] = {}
        self.registry = CollectorRegistry()
        r = self.registry
        self.deliveries = Gauge("warnd_deliveries", "Deliveries by channel and state", ["channel", "state"],
                                registry=r)
        self.queue_depth = Gauge("warnd_queue_depth", "Deliveries due now and not yet claimed", ["channel"],
                                 registry=r)
        self.results = Counter("warnd_send_results_total", "Send attempts by outcome and code",
                               ["channel", "outcome", "code"], registry=r)
        self.retries = Counter("warnd_retries_total", "Attempts that will be retried", ["channel"], registry=r)
        self.send_seconds = Histogram("warnd_send_seconds", "Time a channel took to send one message",
                                      ["channel"], registry=r,
                                      buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.receipts = Counter("warnd_receipts_total", "Provider receipts by outcome and code",
                                ["channel", "state", "code"], registry=r)
        self.answers = Counter("warnd_answers_total", "Inbound answers (SMS replies, key presses) by outcome",
                               ["channel", "outcome"], registry=r)
        self.alarms = Counter("warnd_operator_alarms_total", "Conditions an operator must act on, by code",
                              ["code"], registry=r)
        self.warnings = Counter("warnd_warnings_total", "Warnings accepted", ["msg_type", "status"], registry=r)
        self.supersedes = Counter("warnd_supersedes_total", "Warnings of another department updated or cancelled "
                                  "by the release centre's supersede right", registry=r)
        self.approvals = Counter("warnd_approvals_total", "Approval decisions", ["decision"], registry=r)
        self.rejected = Counter("warnd_rejections_total", "Requests rejected, by error code", ["code"], registry=r)
        self.reconciled = Counter("warnd_reconciled_total",
                                  "Sends settled by looking them up at the provider (status callback lost)",
                                  ["channel", "state"], registry=r)
        self.recovered = Counter("warnd_recovered_total", "Deliveries recovered from dead claims", ["state"],
                                 registry=r)
        self._feed_metrics(r)

    def _feed_metrics(self, r: CollectorRegistry) -> None:
        """CAP feeds warnd polls (warnd/feeds/poller.py)."""
        self.feed_polls = Counter("warnd_feed_polls_total", "Feed polls by feed and result (ok, not_modified, "
                                  "skipped or an error code)", ["feed", "result"], registry=r)
        self.feed_alerts = Counter("warnd_feed_alerts_total", "New alerts applied from a feed", ["feed"],
                                   registry=r)
        self.feed_refused = Counter("warnd_feed_entries_refused_total", "Feed entries refused, by error code",
                                    ["feed", "code"], registry=r)
        self.feed_last_success = Gauge("warnd_feed_last_success_timestamp_seconds",
                                       "When a feed was last polled successfully (Unix time)", ["feed"],
                                       registry=r)

    def child(self, metric: MetricWrapperBase, *labels: str) -> MetricWrapperBase:
        """`metric.labels(*labels)`, looked up once: `labels()` checks, converts and locks on every call,
        and the dispatcher asks for the same few children on every send."""
        key = (metric, labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found
