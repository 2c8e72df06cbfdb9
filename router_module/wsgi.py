"""WSGI entry of router_module for gunicorn, one app per process.

Run it from the apps folder as a top-level module::

    gunicorn --pythonpath router_module wsgi:application

not as ``router_module.wsgi``: that would import the app package outside py4web.
py4web itself imports only the app's ``__init__.py``, so this file is inert in
``waddlebot up``.
"""

from waddlebot.serve import wsgi_app

application = wsgi_app("router_module")
