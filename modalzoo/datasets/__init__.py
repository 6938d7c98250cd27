"""Data: offline sample builders, webdataset shard writing/reading, packing. (Never imported as a
top-level `datasets`, so it does not shadow Hugging Face's package.)"""
