"""Admin: a person's roles (groups) are shown read-only; they change only through the audited
``oblivio user grant|revoke`` (:func:`compliance.accounts.role_grant`)."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin


class AuditedRolesUserAdmin(UserAdmin):
    readonly_fields = ("groups", "user_permissions", "is_superuser", "last_login", "date_joined")


admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), AuditedRolesUserAdmin)
