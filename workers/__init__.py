"""The queue side and the plumbing both sides share: settings, contract, storage, verdict store."""
