"""Agents, teams and keys (admins), and an agent's own status (`/me`)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import AdminDep, OperatorDep, RowId, SessionDep
from api.schemas import (
    AgentCreated,
    AgentPublic,
    AgentRequest,
    AgentUpdate,
    KeyCreated,
    StatusUpdate,
    TeamPublic,
    TeamRequest,
)
from traza import trace
from traza.db.engine import session_scope
from traza.db.models import HumanAgent
from traza.operations import agents as ops
from traza.operations import repository
from traza.operations.handoffs import queue_assignment
from traza.trace import kinds

router = APIRouter(tags=["agents and teams"])


def _unprocessable(exc: Exception) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc))


async def _public(session: AsyncSession, agent: HumanAgent) -> AgentPublic:
    load = await repository.agent_load(session, agent_name=agent.name)
    return AgentPublic(
        id=agent.id,
        name=agent.name,
        email=agent.email,
        role=agent.role,
        status=agent.status,
        capacity=agent.capacity,
        load=load,
        teams=await ops.teams_of(session, agent.id),
        disabled=agent.disabled_at is not None,
        created_at=agent.created_at,
    )


async def _agent(session: AsyncSession, agent_id: int) -> HumanAgent:
    agent = await session.get(HumanAgent, agent_id, with_for_update=True)
    if agent is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="agent not found")
    return agent


@router.get("/agents", response_model=list[AgentPublic])
async def list_agents(session: SessionDep, operator: AdminDep) -> list[AgentPublic]:
    """Every agent with their teams, status and current load."""
    return [await _public(session, a) for a in await repository.agents_by_name(session)]


@router.post("/agents", response_model=AgentCreated, status_code=201)
async def create_agent(body: AgentRequest, operator: AdminDep) -> AgentCreated:
    """Add an agent; the response carries their API key, shown this once."""
    async with session_scope() as session:
        try:
            agent, key = await ops.create_agent(
                session,
                name=body.name,
                teams=body.teams,
                role=body.role,
                capacity=body.capacity,
                email=body.email,
            )
        except ops.OperationsError as exc:
            raise _unprocessable(exc) from None
        await session.flush()
        await session.refresh(agent)
        public = await _public(session, agent)
    return AgentCreated(**public.model_dump(), api_key=key)


@router.get("/agents/{agent_id}", response_model=AgentPublic)
async def get_agent(agent_id: RowId, session: SessionDep, operator: AdminDep) -> AgentPublic:
    """One agent."""
    return await _public(session, await _agent(session, agent_id))


def _integration_problem(agent: HumanAgent, change: AgentUpdate) -> str | None:
    """Why `change` cannot apply to an integration (or make one); None when it can."""
    if change.role not in (None, agent.role) and ops.INTEGRATION in (change.role, agent.role):
        return "a person's key cannot become an integration's or back: add a new agent"
    if agent.role != ops.INTEGRATION:
        return None
    if change.capacity or change.status not in (None, "offline"):
        return "an integration takes no conversations (capacity 0, offline)"
    if change.teams == []:
        return "an integration needs the team(s) it writes for"
    return None


async def _apply(session: AsyncSession, agent: HumanAgent, change: AgentUpdate, by: str) -> None:
    if problem := _integration_problem(agent, change):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=problem)
    if change.teams is not None:
        try:
            await ops.set_teams(session, agent, change.teams)
        except ops.OperationsError as exc:
            raise _unprocessable(exc) from None
    if change.role is not None:
        agent.role = change.role
    if change.capacity is not None:
        agent.capacity = change.capacity
    if change.disabled is not None:
        await ops.set_disabled(session, agent, change.disabled)
    if change.status is not None and change.status != agent.status:
        before, agent.status = agent.status, change.status
        await trace.record(
            session,
            conversation_id=None,
            kind=kinds.AGENT_STATUS,
            actor=trace.human(by),
            data={"agent": agent.name, "from": before, "to": change.status},
        )
    await session.flush()
    # More room or a new member online: the agent's teams' queues may move.
    for team in await ops.teams_of(session, agent.id):
        await queue_assignment(session, team)


@router.patch("/agents/{agent_id}", response_model=AgentPublic)
async def update_agent(agent_id: RowId, body: AgentUpdate, operator: AdminDep) -> AgentPublic:
    """Change teams, role, capacity, status, or disable an agent."""
    async with session_scope() as session:
        agent = await _agent(session, agent_id)
        await _apply(session, agent, body, operator.name)
        return await _public(session, agent)


@router.post("/agents/{agent_id}/keys", response_model=KeyCreated, status_code=201)
async def new_key(agent_id: RowId, operator: AdminDep) -> KeyCreated:
    """A new API key for the agent (their other keys keep working until revoked)."""
    async with session_scope() as session:
        agent = await _agent(session, agent_id)
        key = await ops.issue_key(session, agent)
    return KeyCreated(agent=agent.name, api_key=key, prefix=key.split("_")[1])


@router.delete("/keys/{prefix}", status_code=204)
async def revoke_key(prefix: str, operator: AdminDep) -> None:
    """Revoke a key by its prefix (`trz_<prefix>_…`); it stops working at once."""
    async with session_scope() as session:
        if not await ops.revoke_key(session, prefix):
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no active key with that prefix")


@router.get("/me", response_model=AgentPublic | None)
async def me(session: SessionDep, operator: OperatorDep) -> AgentPublic | None:
    """Who the key belongs to (null for the bootstrap admin key)."""
    if operator.agent_id is None:
        return None
    return await _public(session, await _agent(session, operator.agent_id))


@router.put("/me/status", response_model=AgentPublic)
async def my_status(body: StatusUpdate, request: Request, operator: OperatorDep) -> AgentPublic:
    """Go online, away or offline. Away and offline agents get no new handoffs."""
    if operator.agent_id is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail="the bootstrap admin key is not an agent"
        )
    async with session_scope() as session:
        agent = await _agent(session, operator.agent_id)
        await _apply(session, agent, AgentUpdate(status=body.status), operator.name)
        return await _public(session, agent)


@router.get("/teams", response_model=list[TeamPublic])
async def list_teams(session: SessionDep, operator: OperatorDep) -> list[TeamPublic]:
    """Teams with their members and how many are online."""
    rows = await repository.teams_with_members(session)
    return [
        TeamPublic(name=r.name, description=r.description, members=r.members, online=r.online)
        for r in rows
        if operator.sees_team(r.name)
    ]


@router.post("/teams", response_model=TeamPublic, status_code=201)
async def create_team(body: TeamRequest, operator: AdminDep) -> TeamPublic:
    """Add a team; give it hours and SLAs in the rules file."""
    async with session_scope() as session:
        try:
            await ops.create_team(session, body.name, body.description)
        except ops.OperationsError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    return TeamPublic(name=body.name, description=body.description, members=[], online=0)
