"""Settings for haraqa_site; every deployment knob is an environment variable.

HARAQA_* configure the queue (see README "Configuration"); DJANGO_* configure Django.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .environment import (
    LIMIT,
    POSITIVE,
    SECONDS,
    SettingError,
    choice,
    from_environment,
    name_list,
    path_list,
    switch,
)

BASE_DIR = Path(__file__).resolve().parent.parent


# Queue
HARAQA_VOLUMES = from_environment("HARAQA_VOLUMES", [str(BASE_DIR / "data" / "vol1")], path_list)
HARAQA_ENTRIES = from_environment("HARAQA_ENTRIES", 5000, POSITIVE)
HARAQA_LIMIT = from_environment("HARAQA_LIMIT", -1, LIMIT)
HARAQA_FSYNC = from_environment("HARAQA_FSYNC", "never", choice("never", "batch"))
HARAQA_MAX_BATCH_BYTES = from_environment("HARAQA_MAX_BATCH_BYTES", 1 << 30, POSITIVE)
HARAQA_CLIENT_TIMEOUT = from_environment("HARAQA_CLIENT_TIMEOUT", 30.0, SECONDS)  # 0: wait forever
# haraqa's -cors, -docs and -prometheus flags (all on by default, as there)
HARAQA_CORS = from_environment("HARAQA_CORS", True, switch)
HARAQA_DOCS = from_environment("HARAQA_DOCS", True, switch)
HARAQA_PROMETHEUS = from_environment("HARAQA_PROMETHEUS", True, switch)
HARAQA_ACCESS_LOG = from_environment("HARAQA_ACCESS_LOG", True, switch)

# Django
DATA_DIR = Path(os.environ.get("HARAQA_DATA_DIR", BASE_DIR / "data"))


def _secret_key() -> str:
    """DJANGO_SECRET_KEY, else a key kept in the data dir so every worker shares it."""
    if os.environ.get("DJANGO_SECRET_KEY"):
        return os.environ["DJANGO_SECRET_KEY"]
    key_file = DATA_DIR / "secret_key"
    try:
        return _read_or_create_key(key_file)
    except OSError as exc:
        raise SettingError(
            f"HARAQA_DATA_DIR: cannot keep the secret key in {DATA_DIR} ({exc.strerror}); "
            "make that directory writable, choose another, or set DJANGO_SECRET_KEY"
        ) from None


def _read_or_create_key(key_file: Path) -> str:
    try:
        return key_file.read_text().strip()
    except FileNotFoundError:
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(50)
        try:
            with open(key_file, "x") as f:
                f.write(key)
        except FileExistsError:
            return key_file.read_text().strip()
        os.chmod(key_file, 0o600)
        return key


SECRET_KEY = _secret_key()
DEBUG = from_environment("DJANGO_DEBUG", False, switch)
ALLOWED_HOSTS = from_environment("DJANGO_ALLOWED_HOSTS", ["*"], name_list)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_prometheus",
    "queues",
]

# The optional middlewares below step aside (MiddlewareNotUsed) when their flag is off.
MIDDLEWARE = [
    "queues.metrics.PrometheusBeforeMiddleware",
    "queues.middleware.AllowedHostsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "queues.middleware.StaticFilesMiddleware",
    "queues.middleware.CorsMiddleware",
    "queues.middleware.AdminSessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "queues.middleware.AdminAuthenticationMiddleware",
    "queues.middleware.AdminMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "queues.metrics.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "haraqa_site.urls"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "haraqa_site.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DB_PATH", str(DATA_DIR / "haraqa.sqlite3")),
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("HARAQA_STATIC_ROOT", DATA_DIR / "staticfiles"))
# Served by whitenoise from the app's own files: no collectstatic needed (the Docker image runs it anyway).
WHITENOISE_USE_FINDERS = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "queues.api.negotiation.AnyAcceptNegotiation",
    "EXCEPTION_HANDLER": "queues.api.errors.haraqa_exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "haraqa API",
    "DESCRIPTION": (
        "haraqa's HTTP message queue. Messages travel as raw bytes, back to back; the `X-Sizes` header "
        "gives each message's length. Every error carries its text in the `X-Errors` header, and in the "
        "body too except on a 204.\n\n"
        "Quick start (the server listens on port 4353 by default):\n"
        "1. `PUT /topics/orders` creates the topic: 201.\n"
        "2. `POST /topics/orders` with `X-Sizes: 5:5:3` and the body `helloworldabc` stores three messages: 204.\n"
        "3. `GET /topics/orders` with `X-Id: 0` and `X-Limit: 10` answers 200 with `X-Sizes: 5:5:3` and the "
        "body `helloworldabc`: split it by the sizes. A consume stops at a segment end, so go on from the next "
        "id until a 204 says there is nothing more.\n\n"
        "Watching topics (`GET /ws/topics`, a websocket) and the metrics (`/metrics`) are described in the README."
    ),
    "VERSION": "1.0.0",
    "LICENSE": {"name": "MIT"},
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_PATCH": False,  # PATCH's body is its own serializer: no "Patched" copy of it
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # validatorUrl None: Swagger UI would otherwise send the schema to an online validator.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None, "displayRequestDuration": True},
    "TAGS": [{"name": "topics", "description": "Topics and the messages they hold"}],
    "PREPROCESSING_HOOKS": ["queues.api.schema.drop_trailing_slash_aliases"],
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "queues.api.schema.add_preflight"],
}

# One line per request comes from gunicorn's access log (queues.access_log); 4xx answers are
# normal traffic for a queue, so django.request only reports server errors.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("HARAQA_LOG_LEVEL", "INFO")},
    "loggers": {"django.request": {"level": "ERROR"}},
}
