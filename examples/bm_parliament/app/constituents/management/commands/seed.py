"""python3 manage.py seed --members 20 --links 5

Creates users user001..., one member per user and `links` links per member
(tokens seed-MMM-LL). Existing users and tokens are left as they are, so a
second run adds nothing."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from constituents.models import BMParliamentMember
from unified_db.models import PersonLink


class Command(BaseCommand):
    help = "Creates users, members and links for the reference app."

    def add_arguments(self, parser):
        parser.add_argument("--members", type=int, default=20)
        parser.add_argument("--links", type=int, default=5)

    @transaction.atomic
    def handle(self, *args, members, links, **options):
        User = get_user_model()
        made_members = made_links = 0
        for m in range(1, members + 1):
            user, _ = User.objects.get_or_create(username="user%03d" % m)
            member = BMParliamentMember.for_user(user)
            if member is None:
                member = BMParliamentMember.objects.create(
                    user=user, name="Member %d" % m)
                made_members += 1
            for n in range(1, links + 1):
                token = "seed-%03d-%02d" % (m, n)
                if not PersonLink.objects.filter(token=token).exists():
                    PersonLink.create_for(member, token, "seeded link %d" % n)
                    made_links += 1
        self.stdout.write("seeded %d members, %d links" % (made_members, made_links))
