"""Adopters for the session systems apps most often replace with wsgisession.

* :class:`~wsgisession.adopters.flask_cookie.FlaskCookieAdopter`: Flask's
  default signed-cookie session.
* :class:`~wsgisession.adopters.flask_session.FlaskSessionSQLAlchemyAdopter`
  and :class:`~wsgisession.adopters.flask_session.FlaskSessionRedisAdopter`:
  the records of Flask-Session's SQLAlchemy and Redis backends.

Each is a plain ``adopter(environ)`` for ``SessionMiddleware(adopter=...)``
(:mod:`wsgisession.adoption`); ``wsgisession.contrib.flask`` builds them from
a Flask app's config.
"""
