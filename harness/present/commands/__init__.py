"""The subcommands, grouped by what they work on; each module lists its Commands in COMMANDS."""
