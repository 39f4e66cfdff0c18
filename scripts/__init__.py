"""Operator scripts: stack secrets (init_env), local broker (local_broker), demo."""
