"""Data: records from files or tasks, tokenised batches, and sources with a resumable cursor."""
