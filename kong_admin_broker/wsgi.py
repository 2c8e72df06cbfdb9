"""WSGI entry of kong_admin_broker for gunicorn, one app per process.

Run it from the apps folder as a top-level module::

    gunicorn --pythonpath kong_admin_broker wsgi:application

not as ``kong_admin_broker.wsgi``: that would import the app package outside py4web.
py4web itself imports only the app's ``__init__.py``, so this file is inert in
``waddlebot up``.
"""

from waddlebot.serve import wsgi_app

application = wsgi_app("kong_admin_broker")
