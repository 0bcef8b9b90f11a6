"""Running: one cell measured in a worker, the sweep that plans, schedules and stores, the worker pool, the benchmark grid."""
