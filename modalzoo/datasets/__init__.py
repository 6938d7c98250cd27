"""Data: webdataset shard writing/reading, the shard dataset and its fields. (Never imported as a
top-level `datasets`, so it does not shadow Hugging Face's package.)"""
