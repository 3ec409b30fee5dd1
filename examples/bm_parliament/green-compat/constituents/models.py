"""Members of the portal (green-compat release: the related_name of the new
branding; unified_db keeps its legacy column)."""

from django.conf import settings
from django.db import models


class BMParliamentMember(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="bm_parliament_member")
    name = models.CharField(max_length=100)

    @staticmethod
    def for_user(user):
        """The member of `user` through the reverse accessor, or None."""
        try:
            return user.bm_parliament_member
        except BMParliamentMember.DoesNotExist:
            return None

    def __str__(self):
        return self.name
