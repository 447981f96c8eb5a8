"""``/v1/billing/subscriptions``: the subscription commands over HTTP.

Reading needs a key that sees the workspace (404 otherwise); creating, changing and
cancelling need an admin key (they rewrite what future invoices charge).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from ..config.settings import Settings
from ..subscriptions import service as subscriptions
from .deps import PrincipalDep, SettingsDep
from .errors import COMMON_RESPONSES
from .json import JSONResponse
from .models import (
    WORKSPACE_PATTERN,
    ApiDate,
    CancelSubscription,
    ChangeSubscription,
    CreateSubscription,
    SubscriptionView,
)

router = APIRouter(
    prefix="/v1/billing/subscriptions", tags=["subscriptions"], responses=COMMON_RESPONSES
)

WorkspacePath = Annotated[
    str, Path(pattern=WORKSPACE_PATTERN, examples=["ws_123"], description="Workspace id")
]


def _view(settings: Settings, workspace_id: str, status_code: int = 200) -> Response:
    return JSONResponse(
        subscriptions.show_subscription(settings, workspace_id), status_code=status_code
    )


@router.post(
    "",
    response_model=SubscriptionView,
    status_code=201,
    summary="Subscribe a workspace to a plan (admin)",
    description="Like `billing-batch subscription create`; answers the workspace's "
    "subscriptions (current plan and history).",
)
def create_subscription(
    body: CreateSubscription,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> Response:
    principal.require_admin("creating a subscription")
    subscriptions.create_subscription(
        settings,
        body.workspaceId,
        body.plan,
        body.start,
        anchor_day=body.anchorDay,
        trial_days=body.trialDays,
    )
    return _view(settings, body.workspaceId, 201)


@router.get(
    "/{workspace_id}",
    response_model=SubscriptionView,
    summary="A workspace's current plan and history",
)
def show_subscription(
    workspace_id: WorkspacePath,
    settings: SettingsDep,
    principal: PrincipalDep,
    on: Annotated[
        ApiDate | None, Query(description="Status as of this day (default today)")
    ] = None,
) -> Response:
    principal.check_read(workspace_id, f"workspace {workspace_id} has no subscription")
    return JSONResponse(subscriptions.show_subscription(settings, workspace_id, on=on))


@router.post(
    "/{workspace_id}/change",
    response_model=SubscriptionView,
    summary="Switch plan from an effective date (admin)",
)
def change_subscription(
    workspace_id: WorkspacePath,
    body: ChangeSubscription,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> Response:
    principal.require_admin("changing a subscription")
    subscriptions.change_subscription(settings, workspace_id, body.plan, body.effective)
    return _view(settings, workspace_id)


@router.post(
    "/{workspace_id}/cancel",
    response_model=SubscriptionView,
    summary="Cancel from an effective date, the first day without it (admin)",
)
def cancel_subscription(
    workspace_id: WorkspacePath,
    body: CancelSubscription,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> Response:
    principal.require_admin("cancelling a subscription")
    subscriptions.cancel_subscription(settings, workspace_id, body.effective)
    return _view(settings, workspace_id)
