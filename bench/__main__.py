"""`make bench`: every benchmark, one after the other, in one run."""

from bench import decision, reconcile_scale, store_contention, webhook

if __name__ == "__main__":
    decision.main([])
    print()
    store_contention.main([])
    print()
    webhook.main([])
    print()
    reconcile_scale.main([])
