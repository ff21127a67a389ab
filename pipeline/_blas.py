"""One BLAS thread for small matrices: the heads' and the audit's fits."""

from __future__ import annotations

import functools

from threadpoolctl import threadpool_limits


def one_blas_thread(method):
    """Run ``method`` with one BLAS thread: these matrices are small, and on a busy machine competing BLAS
    threads made logistic regression 20 times slower."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with threadpool_limits(limits=1, user_api="blas"):
            return method(*args, **kwargs)

    return wrapper
