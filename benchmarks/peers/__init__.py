"""The peers of `make bench` (issue 11): what Pinexa's GetUser is compared with, side by side.

- `orm_app`: FastAPI + PyJWT + SQLAlchemy's async ORM (`session.get`);
- `psycopg_app`: FastAPI + PyJWT + a raw psycopg `AsyncConnectionPool`;
- `echo`: a bare grpc.aio unary echo, the Python ceiling for a gRPC call.

The two FastAPI apps do the work GetUser does: verify an ES256 JWT per request with PyJWT (no
token cache), read the user row by primary key from the same database the users service uses,
and return it as JSON. They are configured by environment variables (see `common.PeerSettings`)
and served by uvicorn with one worker. Each counts what it answered on `GET /_bench/counters`, so
the harness can check that the server side saw 0 errors. Each app is written out in full, the way
an app of that stack would be (engine or pool, lifespan, route), so their likeness is deliberate;
what is the same work for both (the JWT check, the counters, the reply) lives in `common`.
"""
