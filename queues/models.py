"""Unmanaged models: they give the admin its index entries, permissions and log entries.

Topics and volumes are files, not rows (django-rq's pattern): no table is ever created,
and every page reads the storage engine. A ``Topic``'s primary key is its name and a
``Volume``'s its path, so admin ``LogEntry`` rows point at the right object.
"""

from __future__ import annotations

from django.db import models


class Topic(models.Model):
    name = models.CharField(primary_key=True, max_length=1024)

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_topics", "Can view topics and read their messages"),
            ("change_topics", "Can produce to, truncate and delete topics"),
        ]

    def __str__(self) -> str:
        return self.name


class Volume(models.Model):
    path = models.CharField(primary_key=True, max_length=4096)

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_volumes", "Can view volumes and their health"),
            ("can_recover", "Can check and recover volumes"),
        ]

    def __str__(self) -> str:
        return self.path
