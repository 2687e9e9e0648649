"""Settings and plumbing every stage uses: errors (one exception family), status (progress lines on the terminal),
hardware (device, dtype, threads), config (a params YAML → one validated config tree) and runs (never-overwritten run
folders, atomic writes, provenance).
"""
