"""Many hosts, one queue (with a PostgreSQL store): API hosts commit jobs and send generation jobs through
Procrastinate to worker hosts (`sdcpp-restapi worker`), which report back through tables of our own schema and
LISTEN/NOTIFY. dispatch.py is the API host's side, worker.py the worker host's, database.py what both share."""
