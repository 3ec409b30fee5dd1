"""Links of the unified database (blue release: the legacy field name,
column fahanie_cares_member_id).

Every use of the field's name is in this file, so that the views are the
same in every release.
"""

from django.db import models


class PersonLinkQuerySet(models.QuerySet):
    def with_member(self):
        return self.select_related("fahanie_cares_member")

    def for_member(self, member):
        return self.for_member_id(member.pk)

    def for_member_id(self, member_id):
        return self.with_member().filter(
            fahanie_cares_member_id=member_id).order_by("-id")


class PersonLink(models.Model):
    fahanie_cares_member = models.ForeignKey(
        "constituents.BMParliamentMember", on_delete=models.CASCADE,
        related_name="person_links")
    token = models.CharField(max_length=64, unique=True)
    note = models.CharField(max_length=200, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    objects = PersonLinkQuerySet.as_manager()

    @classmethod
    def create_for(cls, member, token, note=""):
        return cls.objects.create(fahanie_cares_member=member, token=token,
                                  note=note)

    @property
    def member(self):
        return self.fahanie_cares_member

    @property
    def member_id_value(self):
        return self.fahanie_cares_member_id

    def __str__(self):
        return self.token
