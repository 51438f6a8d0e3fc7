"""CLI verbs: each module exports register(subparsers) and sets func=run(args) -> int."""
