"""`make bench`: every benchmark, one after the other, in one run."""

from bench import store_contention

if __name__ == "__main__":
    store_contention.main([])
