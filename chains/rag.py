"""LCEL chains: question (+ chat history) -> retrieve -> tutorial prompt -> chat model -> answer.

The factories accept a plain string, or a mapping / :class:`QuestionInput`:

- ``question``: the question (the last user turn);
- ``chat_history``: the prior turns (see :mod:`milvus_rag.chains.history` for the
  accepted forms). With prior turns, the chat model first rewrites the question into
  a standalone question (:data:`~milvus_rag.chains.prompt.CONDENSE_PROMPT`, one extra
  call); retrieval and the tutorial's answer prompt then use that question. Without
  history there is no extra call;
- ``citations``: number the passages, ask the model to cite them (``[1]``) and end
  the answer with a numbered source list (default: ``answer.citations``);
- ``system``: extra instructions, appended to the prompt's system message.

Chains support ``invoke``, ``batch``, ``stream``, ``ainvoke`` and ``astream``.
Building a chain touches no network and loads no model: the store opens and the
model loads on the first question.

Example:
    .. code-block:: python

        from milvus_rag import load_settings
        from milvus_rag.chains import build_rag_chain

        chain = build_rag_chain(load_settings())
        print(chain.invoke("How is data stored in milvus?"))
        print(
            chain.invoke(
                {
                    "question": "And how is it flushed?",
                    "chat_history": [
                        ("user", "How is data stored in milvus?"),
                        ("assistant", "In object storage and etcd."),
                    ],
                    "citations": True,
                }
            )
        )
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from langchain_core.documents import Document
from langchain_core.messages import BaseMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompt_values import ChatPromptValue
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import (
    AddableDict,
    Runnable,
    RunnableConfig,
    RunnableGenerator,
    RunnableLambda,
)
from milvus_rag.chains.history import (
    messages_from,
    recent_turns,
    standalone_question,
    transcript,
)
from milvus_rag.chains.prompt import (
    CITATION_INSTRUCTION,
    CONDENSE_PROMPT,
    RAG_PROMPT,
    CitationFilter,
    format_docs,
    neutralize,
    source_list,
)
from pydantic import BaseModel, Field, model_validator

from milvus_rag.store import BOOKKEEPING_FIELDS, HEADING_FIELD, ORIGIN_FIELD, SOURCE_FIELD
from milvus_rag.telemetry import LLMWatcher, step

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.retrievers import BaseRetriever

    from milvus_rag.settings import Settings

__all__ = [
    "CONDENSE_TAG",
    "INTERNAL_METADATA",
    "QuestionInput",
    "build_rag_chain",
    "build_rag_chain_with_sources",
    "build_retrieval_chain",
    "client_document",
    "retrieved_of",
    "source_of",
]

#: Tag on the question-rewrite step's runs (and its chat model call), for callbacks.
CONDENSE_TAG = "milvus_rag:condense"


class QuestionInput(BaseModel):
    """The chains' input: a question, with its chat history and options.

    A plain string is accepted too (``chain.invoke("How is data stored?")``): it
    becomes ``{"question": ...}``. The chains declare this model as their input type,
    so ``chain.as_tool()`` and LangServe see one object schema.
    """

    question: str = Field(..., description="The question to answer from the documents.")
    chat_history: list[Any] = Field(
        default_factory=list,
        description=(
            "Prior turns, oldest first: messages, [role, content] pairs or "
            '{"role": "user"|"assistant", "content": ...} objects.'
        ),
    )
    citations: bool | None = Field(
        None, description="Cite the passages ([1], [2]) and end with a numbered source list."
    )
    system: str | None = Field(
        None, description="Extra instructions, appended to the system message."
    )

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        return {"question": value} if isinstance(value, str) else value


def _inputs(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return {"question": value, "chat_history": [], "citations": None, "system": None}
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, dict) and isinstance(value.get("question"), str):
        system = value.get("system")
        if system is not None and not isinstance(system, str):
            raise TypeError("system must be a string")
        citations = value.get("citations")
        if citations is not None and not isinstance(citations, bool):
            raise TypeError("citations must be true or false")
        return {
            "question": value["question"],
            "chat_history": messages_from(value.get("chat_history")),
            "citations": citations,
            "system": system,
        }
    raise TypeError(
        'chain input must be a question string or {"question": "...", "chat_history": [...]}'
    )


def _question_only(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, dict) and isinstance(value.get("question"), str):
        return str(value["question"])
    raise TypeError('input must be a question string or {"question": "..."}')


def _check_prompt(prompt: ChatPromptTemplate) -> ChatPromptTemplate:
    variables = set(prompt.input_variables)
    missing = {"context", "question"} - variables
    if missing:
        raise ValueError(f"the prompt must use {{context}} and {{question}}; missing {missing}")
    extra = variables - {"context", "question"}
    if extra:
        raise ValueError(
            f"the prompt may only use {{context}} and {{question}}; it also uses {extra}"
        )
    return prompt


def _extended_system(messages: list[BaseMessage], additions: list[str]) -> list[BaseMessage]:
    """``additions`` appended, one per line, to the first system message (or a new one)."""
    if not additions:
        return messages
    extra = "\n".join(additions)
    if messages and isinstance(messages[0], SystemMessage) and isinstance(messages[0].content, str):
        first = SystemMessage(content=f"{messages[0].content}\n{extra}")
        return [first, *messages[1:]]
    return [SystemMessage(content=extra), *messages]


def _prompt_value(prompt: ChatPromptTemplate, state: dict[str, Any]) -> ChatPromptValue:
    cited = bool(state["citations"])
    messages = prompt.format_messages(
        context=format_docs(state["context"], numbered=cited),
        question=neutralize(state["question"]),
    )
    additions = [CITATION_INSTRUCTION] if cited else []
    if state["system"] and state["system"].strip():
        additions.append(state["system"].strip())
    return ChatPromptValue(messages=_extended_system(messages, additions))


def _cited(docs: list[Document]) -> RunnableGenerator[Any, Any]:
    """The answer's pieces through :class:`CitationFilter`, then the source list (if any)."""
    listing = source_list(docs)
    suffix = "\n\n" + listing if listing else ""

    def add(chunks: Iterator[str]) -> Iterator[str]:
        cited = CitationFilter(len(docs))
        for chunk in chunks:
            if shown := cited.feed(chunk):
                yield shown
        if rest := cited.flush() + suffix:
            yield rest

    async def aadd(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
        cited = CitationFilter(len(docs))
        async for chunk in chunks:
            if shown := cited.feed(chunk):
                yield shown
        if rest := cited.flush() + suffix:
            yield rest

    return RunnableGenerator(add, aadd, name="source_list")


def _answer(prompt: ChatPromptTemplate, llm: Runnable[Any, Any]) -> Runnable[Any, str]:
    """State (question, context, citations, system) -> answer text, streamed."""
    generate: Runnable[Any, str] = (
        RunnableLambda(lambda state: _prompt_value(prompt, state), name="prompt")
        | _watched(llm, "answer")
        | StrOutputParser()
    )

    def route(state: dict[str, Any]) -> Runnable[Any, str]:
        return generate | _cited(list(state["context"])) if state["citations"] else generate

    return RunnableLambda(route, name="answer").with_types(output_type=str)


def _watched(llm: Runnable[Any, Any], call: str) -> Runnable[Any, Any]:
    """``llm`` reporting its calls to the active telemetry (:mod:`milvus_rag.telemetry`)."""
    return llm.with_config(callbacks=[LLMWatcher(call)])


def _capped(llm: Runnable[Any, Any], max_tokens: int) -> Runnable[Any, Any]:
    """``llm`` asked for at most ``max_tokens`` tokens (a chat model, bound or not; any
    other runnable as it is: it may not take the option)."""
    from langchain_core.language_models import BaseChatModel
    from langchain_core.runnables import RunnableBinding

    if isinstance(llm, BaseChatModel) or (
        isinstance(llm, RunnableBinding) and isinstance(llm.bound, BaseChatModel)
    ):
        return llm.bind(max_tokens=max_tokens)
    return llm


def _condense(llm: Runnable[Any, Any], history_turns: int, limit: int) -> Runnable[Any, str]:
    """State -> the standalone question: the question itself when there is no history.

    The rewrite is a question: its call asks for at most ``limit`` tokens, and the
    standalone question is held to ``limit`` characters (the server's question limit,
    ``server.max_question_chars``), whatever the endpoint sends back.
    """
    rewrite = (
        CONDENSE_PROMPT | _capped(_watched(llm, "rewrite"), limit) | StrOutputParser()
    ).with_config(run_name="condense_question", tags=[CONDENSE_TAG])

    def inputs(state: dict[str, Any]) -> dict[str, str] | None:
        turns = recent_turns(state["chat_history"], history_turns)
        if not turns:
            return None
        return {"history": transcript(turns), "question": state["question"]}

    def run(state: dict[str, Any], config: RunnableConfig) -> str:
        values = inputs(state)
        if values is None:
            return str(state["question"])
        with step("history_rewrite"):
            reply = rewrite.invoke(values, config)
        return str(neutralize(standalone_question(reply, state["question"], limit)))

    async def arun(state: dict[str, Any], config: RunnableConfig) -> str:
        values = inputs(state)
        if values is None:
            return str(state["question"])
        with step("history_rewrite"):
            reply = await rewrite.ainvoke(values, config)
        return str(neutralize(standalone_question(reply, state["question"], limit)))

    return RunnableLambda(run, afunc=arun, name="standalone_question")


def _parts(
    settings: Settings | None,
    retriever: BaseRetriever | Runnable[Any, Any] | None,
    llm: BaseChatModel | Runnable[Any, Any] | None,
    embeddings: Any,
    expr: str | None = None,
) -> tuple[Runnable[Any, Any], Runnable[Any, Any]]:
    if (retriever is None or llm is None) and settings is None:
        raise TypeError("pass settings, or both retriever and llm")
    if retriever is None:
        from milvus_rag.retriever import MilvusRAGRetriever

        assert settings is not None
        retriever = MilvusRAGRetriever.from_settings(settings, embeddings=embeddings, expr=expr)
    if llm is None:
        from milvus_rag.llm import chat_model_from_settings

        assert settings is not None
        llm = chat_model_from_settings(settings)
    return retriever, llm


def _state(
    settings: Settings | None,
    retriever: Runnable[Any, Any],
    condense_llm: Runnable[Any, Any],
    citations: bool | None,
) -> Runnable[Any, dict[str, Any]]:
    """Input -> ``{"question" (standalone), "chat_history", "citations", "system", "context"}``."""
    from milvus_rag.settings import AnswerSettings, ServerSettings

    answer = settings.answer if settings is not None else AnswerSettings()
    limit = (settings.server if settings is not None else ServerSettings()).max_question_chars
    default_citations = answer.citations if citations is None else citations

    def normalise(value: Any) -> dict[str, Any]:
        state = _inputs(value)
        if state["citations"] is None:
            state["citations"] = default_citations
        return state

    # One step, not ``RunnablePassthrough.assign``s: when a stream of those fails (the
    # rewrite's LLM call), LangChain leaves tasks whose exceptions are never retrieved.
    condense = _condense(condense_llm, answer.history_turns, limit)

    def complete(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        question = condense.invoke(state, config)
        return {**state, "question": question, "context": retriever.invoke(question, config)}

    async def acomplete(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        question = await condense.ainvoke(state, config)
        context = await retriever.ainvoke(question, config)
        return {**state, "question": question, "context": context}

    input_type: Any = QuestionInput
    return RunnableLambda(normalise, name="inputs").with_types(
        input_type=input_type
    ) | RunnableLambda(complete, afunc=acomplete, name="question_and_context")


def _build(
    settings: Settings | None,
    retriever: BaseRetriever | Runnable[Any, Any] | None,
    llm: BaseChatModel | Runnable[Any, Any] | None,
    embeddings: Any,
    expr: str | None,
    prompt: ChatPromptTemplate | None,
    citations: bool | None,
    condense_llm: BaseChatModel | Runnable[Any, Any] | None,
) -> tuple[Runnable[Any, dict[str, Any]], Runnable[Any, str]]:
    retriever, llm = _parts(settings, retriever, llm, embeddings, expr)
    state = _state(settings, retriever, condense_llm or llm, citations)
    return state, _answer(_check_prompt(prompt) if prompt is not None else RAG_PROMPT, llm)


def build_rag_chain(
    settings: Settings | None = None,
    *,
    retriever: BaseRetriever | Runnable[Any, Any] | None = None,
    llm: BaseChatModel | Runnable[Any, Any] | None = None,
    embeddings: Any = None,
    expr: str | None = None,
    prompt: ChatPromptTemplate | None = None,
    citations: bool | None = None,
    condense_llm: BaseChatModel | Runnable[Any, Any] | None = None,
) -> Runnable[Any, str]:
    """Question (+ chat history) -> answer string.

    Args:
        settings: used to build whatever is not given, and for the ``answer`` section.
        retriever: any LangChain retriever (default: :class:`MilvusRAGRetriever`).
        llm: any chat model (default: ``ChatOpenAI`` on the configured endpoint),
            possibly bound (``llm.bind(temperature=0)``).
        embeddings: the embeddings for the default retriever.
        expr: a Milvus filter for the default retriever (see ``milvus_rag.filters``).
        prompt: a ``ChatPromptTemplate`` using ``{context}`` and ``{question}``
            instead of the tutorial's (both values are still neutralised).
        citations: the default for inputs that do not say (``answer.citations``).
        condense_llm: the chat model that rewrites follow-up questions (default: ``llm``).
    """
    state, answer = _build(
        settings, retriever, llm, embeddings, expr, prompt, citations, condense_llm
    )
    return _named(state | answer, "milvus_rag")


def build_rag_chain_with_sources(
    settings: Settings | None = None,
    *,
    retriever: BaseRetriever | Runnable[Any, Any] | None = None,
    llm: BaseChatModel | Runnable[Any, Any] | None = None,
    embeddings: Any = None,
    expr: str | None = None,
    prompt: ChatPromptTemplate | None = None,
    citations: bool | None = None,
    condense_llm: BaseChatModel | Runnable[Any, Any] | None = None,
) -> Runnable[Any, dict[str, Any]]:
    """Question (+ chat history) -> ``{"answer": str, "context": [Document, ...]}``.

    Same arguments as :func:`build_rag_chain`. Each context document carries
    ``metadata["source"]`` and ``metadata["score"]``. Streaming yields the
    ``context`` first, then the answer in pieces.
    """
    state, answer = _build(
        settings, retriever, llm, embeddings, expr, prompt, citations, condense_llm
    )
    chain = state | _with_sources(answer)
    return _named(chain, "milvus_rag_with_sources")


def _with_sources(answer: Runnable[Any, str]) -> Runnable[Any, dict[str, Any]]:
    """State -> ``{"answer", "context"}``: streamed, the context first, then the answer in
    pieces; invoked, the answer in one call (so the endpoint reports its usage).

    Not ``RunnablePassthrough.assign``: when the state's stream fails (the rewrite's LLM
    call in an outage), its task for the answer is left with an unretrieved exception.
    """
    return _AnswerWithSources(answer).with_types(output_type=_WithSources)


def _whole(states: Iterable[dict[str, Any]]) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for part in states:
        state.update(part)
    return state


class _AnswerWithSources(RunnableGenerator[Any, Any]):
    """See :func:`_with_sources`."""

    def __init__(self, answer: Runnable[Any, str]) -> None:
        self.answer = answer

        def pieces(states: Iterator[dict[str, Any]], config: RunnableConfig) -> Iterator[Any]:
            state = _whole(states)
            yield AddableDict(context=state["context"])
            for piece in answer.stream(state, config):
                yield AddableDict(answer=piece)

        async def apieces(
            states: AsyncIterator[dict[str, Any]], config: RunnableConfig
        ) -> AsyncIterator[Any]:
            state = _whole([part async for part in states])
            yield AddableDict(context=state["context"])
            async for piece in answer.astream(state, config):
                yield AddableDict(answer=piece)

        super().__init__(pieces, apieces, name="answer_with_sources")  # type: ignore[arg-type]

    def _whole_answer(self, state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        return {"answer": self.answer.invoke(state, config), "context": state["context"]}

    async def _awhole_answer(self, state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        return {"answer": await self.answer.ainvoke(state, config), "context": state["context"]}

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self._call_with_config(self._whole_answer, input, config)  # type: ignore[arg-type]

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await self._acall_with_config(self._awhole_answer, input, config)  # type: ignore[arg-type]


class _WithSources(BaseModel):
    answer: str
    context: list[Document]


def build_retrieval_chain(
    settings: Settings | None = None,
    *,
    retriever: BaseRetriever | Runnable[Any, Any] | None = None,
    embeddings: Any = None,
    expr: str | None = None,
) -> Runnable[Any, list[dict[str, Any]]]:
    """Question -> the retrieved passages as :func:`retrieved_of` dicts (no LLM)."""
    if retriever is None:
        if settings is None:
            raise TypeError("pass settings or a retriever")
        from milvus_rag.retriever import MilvusRAGRetriever

        retriever = MilvusRAGRetriever.from_settings(settings, embeddings=embeddings, expr=expr)
    input_type: Any = QuestionInput
    question = RunnableLambda(_question_only, name="question").with_types(input_type=input_type)
    listing: Runnable[Any, list[dict[str, Any]]] = RunnableLambda(_passages, name="passages")
    return _named(question | retriever | listing, "milvus_rag_retrieve")


def _named(chain: Runnable[Any, Any], name: str) -> Runnable[Any, Any]:
    """``chain`` named ``name``: in traces (``run_name``) and as ``chain.as_tool()``'s name."""
    chain.name = name
    return chain.with_config(run_name=name)


def _passages(docs: list[Document]) -> list[dict[str, Any]]:
    return [retrieved_of(doc) for doc in docs]


#: Chunk metadata kept from clients: ``origin`` is the ingested folder's absolute path
#: (or the URL), the others are ingest bookkeeping (see ``milvus_rag.sync``). The
#: retriever already leaves them out (``origin`` unless ``retrieval.include_origin``);
#: this also covers documents of other retrievers over the same collection.
INTERNAL_METADATA = BOOKKEEPING_FIELDS | {ORIGIN_FIELD}


def client_document(doc: Document) -> Document:
    """``doc`` as clients may see it: its metadata without :data:`INTERNAL_METADATA`."""
    if INTERNAL_METADATA.isdisjoint(doc.metadata):
        return doc
    metadata = {k: v for k, v in doc.metadata.items() if k not in INTERNAL_METADATA}
    return Document(page_content=doc.page_content, metadata=metadata, id=doc.id)


def source_of(doc: Document) -> dict[str, Any]:
    """The JSON shape of a retrieved chunk: ``{"text", "source", "score"}``."""
    return {
        "text": doc.page_content,
        "source": doc.metadata.get(SOURCE_FIELD),
        "score": doc.metadata.get("score"),
    }


def retrieved_of(doc: Document) -> dict[str, Any]:
    """:func:`source_of` plus the chunk's heading path: ``{"text", "source", "heading", "score"}``."""
    found = source_of(doc)
    return {
        "text": found["text"],
        "source": found["source"],
        "heading": doc.metadata.get(HEADING_FIELD) or None,
        "score": found["score"],
    }
