"""Preference data as `Pair` rows: formats (one converter per published record format), sources (the named sources of
paper Table 4, from the hub or a local copy), groups (a pair's group and its stable hash), splits (grouped
train/calibration/test sides), sampling (every batch plan of both tiers), paper (the paper's reported numbers, read
from its CSVs), datacard (pairs per source beside the paper's Table 4) and pairs_files (a user's JSON/JSONL/parquet
preference files).
"""
