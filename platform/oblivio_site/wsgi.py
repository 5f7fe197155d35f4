"""WSGI entry point (``gunicorn oblivio_site.wsgi``)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oblivio_site.settings")
application = get_wsgi_application()

from core.keys import check_deployment_keys  # noqa: E402 (needs the apps loaded above)

check_deployment_keys()  # a data directory with other keys stops the server before it serves
