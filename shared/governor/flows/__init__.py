"""The flows, one module each: verification, dispatch (the at-most-once core), deploy
outcome, approval, protection rule; `delivery` routes a webhook delivery to its flow.

Each reads top to bottom as gather (all reads, concurrently), plan (the pure core turns
them into a decision), act (effects in a fixed order, each guarded by a record written
before it). They share a small typed `Context` and return typed results.
"""
