"""``mtssl-sweep``: many experiments over one shard build, scheduled on Ray (spec, plan, execute, schedule,
summary, cli)."""
