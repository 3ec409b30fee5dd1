"""The JSON endpoints of the reference app.

This file is the same in every release: everything that names the renamed
field lives in the models' helpers (constituents/models.py,
unified_db/models.py), so a release's views fail exactly when its models no
longer match the database. /health/ never touches the database, and
/health/detailed/ answers 200 even with migrations pending: like the seed's
health endpoint, neither notices schema drift.
"""

import json
import os

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET, require_http_methods

from constituents.models import BMParliamentMember
from unified_db.models import PersonLink

LIST_LIMIT = 20


def _broken():
    """True when this release was told to fail (the fail file exists)."""
    return bool(settings.BMP_FAIL_FILE) and os.path.exists(settings.BMP_FAIL_FILE)


def _fail():
    return JsonResponse({"error": "release %s is broken on purpose"
                         % settings.BMP_RELEASE}, status=500)


def _link_json(link):
    return {"id": link.id, "token": link.token, "note": link.note,
            "member": link.member_id_value,
            "member_name": link.member.name,
            "created": link.created.isoformat()}


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@require_http_methods(["GET", "POST"])
def links(request):
    if _broken():
        return _fail()
    if request.method == "GET":
        member_id = _int(request.GET.get("member"))
        if member_id is None:
            return JsonResponse({"error": "member=ID is required"}, status=400)
        rows = PersonLink.objects.for_member_id(member_id)[:LIST_LIMIT]
        return JsonResponse({"member": member_id,
                             "links": [_link_json(l) for l in rows]})

    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            return JsonResponse({"error": "bad JSON"}, status=400)
        if not isinstance(data, dict):
            return JsonResponse({"error": "expected a JSON object"}, status=400)
    else:
        data = request.POST
    member_id = _int(data.get("member"))
    token = str(data.get("token") or "")
    note = str(data.get("note") or "")
    if member_id is None or not token or len(token) > 64 or len(note) > 200:
        return JsonResponse({"error": "member, token (1-64) and note (0-200) "
                             "are required"}, status=400)
    member = BMParliamentMember.objects.filter(pk=member_id).first()
    if member is None:
        return JsonResponse({"error": "no member %d" % member_id}, status=404)
    try:
        # Autocommit: the row is committed when save() returns, so the 201
        # below is an acknowledged write.
        link = PersonLink.create_for(member, token, note)
    except IntegrityError:
        return JsonResponse({"error": "token %s exists" % token}, status=409)
    return JsonResponse({"id": link.id, "token": link.token}, status=201)


@require_GET
def link_detail(request, token):
    if _broken():
        return _fail()
    link = PersonLink.objects.with_member().filter(token=token).first()
    if link is None:
        return JsonResponse({"error": "no link %s" % token}, status=404)
    return JsonResponse(_link_json(link))


@require_GET
def member_detail(request, user_id):
    if _broken():
        return _fail()
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is None:
        return JsonResponse({"error": "no user %d" % user_id}, status=404)
    member = BMParliamentMember.for_user(user)
    if member is None:
        return JsonResponse({"error": "user %d is no member" % user_id}, status=404)
    return JsonResponse({"user": user.id, "username": user.username,
                         "member": member.id, "name": member.name,
                         "links": member.person_links.count()})


@require_GET
def health(request):
    return HttpResponse("ok", content_type="text/plain")


@require_GET
def health_detailed(request):
    """The database's reachability and the migrations `showmigrations` would
    list unapplied. 200 whatever they say, as the seed's endpoint does."""
    out = {"release": settings.BMP_RELEASE, "database": "no",
           "pending_migrations": None}
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
        out["database"] = "yes"
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        out["pending_migrations"] = ["%s.%s" % (m.app_label, m.name)
                                     for m, _backwards in plan]
    except Exception as e:  # noqa: a health answer, not an error page
        out["error"] = "%s: %s" % (type(e).__name__, str(e).strip())
    return JsonResponse(out)


def not_found(request, exception=None):
    return JsonResponse({"error": "not found"}, status=404)


def server_error(request):
    return JsonResponse({"error": "server error"}, status=500)
