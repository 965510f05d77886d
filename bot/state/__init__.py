"""State that outlives a process: the store (memory or Redis), its batching, job queues. Knows no use-case; imports infra and the domain."""
