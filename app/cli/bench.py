"""kgmon bench (placeholder until app/bench lands)."""


def add_parser(sub, common) -> None:
    p = sub.add_parser("bench", parents=[common], help="measure latency and throughput")
    p.set_defaults(run=lambda args: 1)
