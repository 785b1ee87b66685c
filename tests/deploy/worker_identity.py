"""``AIRFLOW__CORE__HOSTNAME_CALLABLE`` for the deployment test's Celery workers: each worker stands for
a machine of its own, so each reports its own name (DEPLOY_WORKER_NAME) as the task instance's hostname."""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    """This worker's machine name."""
    return os.environ.get("DEPLOY_WORKER_NAME") or socket.getfqdn()
