# tries: read environment variables through os.environ
# expect: rejected
import os

def filter(alert):
    return "AFS_SANDBOX_TEST_SECRET" in os.environ
