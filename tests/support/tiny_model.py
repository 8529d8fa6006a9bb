"""Build a tiny, deterministic BERT-like ONNX embedding model for tests.

The folder written by :func:`make_tiny_model` looks like a Hugging Face model
folder (``config.json``, ``tokenizer.json``, ``tokenizer_config.json``,
``special_tokens_map.json``, ``vocab.txt``) plus a ``model.onnx`` whose
interface matches what pymilvus-model's ONNX embedding code expects
(``input_ids``/``attention_mask``/``token_type_ids`` in, ``last_hidden_state``
out).  Everything is generated offline in a few milliseconds.
"""

from __future__ import annotations

import json
import pathlib
import string

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
)

__all__ = ["COMMON_WORDS", "DOMAIN_WORDS", "SPECIAL_TOKENS", "make_tiny_model"]


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

DOMAIN_WORDS: tuple[str, ...] = _words(
    """
    milvus vector vectors data database store stores stored storage object flush
    index indexes collection collections search query queries embedding
    embeddings document documents chunk chunks segment segments partition schema
    field fields metric cosine similarity retrieval rag llm model models onnx
    token tokens insert delete upsert load release node nodes proxy coordinator
    minio etcd pulsar kafka log logs binlog persist persistence memory disk
    cluster server client api python langchain openai answer question context
    source sources text hnsw ivf flat dense sparse hybrid top k score scores
    distance
    """
)

COMMON_WORDS: tuple[str, ...] = _words(
    """
    the be to of and a in that have i it for not on with he as you do at this
    but his by from they we say her she or an will my one all would there their
    what so up out if about who get which go me when make can like time no just
    him know take people into year your good some could them see other than then
    now look only come its over think also back after use two how our work first
    well way even new want because any these give day most us is are was were
    been has had does did done made used using uses where why hello world cat
    cats dog dogs sat mat ran run fast slow big small red blue green black white
    house car tree water fire food apple apples banana bananas fruit eat eats
    ate sun moon sky rain snow weather today tomorrow yesterday morning night
    city country road book books read write written file files page pages number
    numbers name names list lists part place case point fact hand high low long
    short great little old young right left large next early late important few
    public private same able bad best better many much more less very each every
    both here should may might must shall being thing things man woman child
    children life system systems program problem question service information
    group company money market music game games school student students teacher
    family friend friends home office room door window table chair computer
    phone network internet software hardware code test tests testing result
    results value values key keys type types set get put find found show tell
    ask try call keep let begin seem help talk turn start stop open close move
    live believe hold bring happen provide sit stand lose pay meet include
    continue learn change lead understand watch follow create speak allow add
    spend grow offer remember love consider appear buy wait serve die send
    expect build stay fall cut reach kill remain yes ok okay please thanks thank
    hi hey goodbye quick brown fox jumps jumped lazy between under again never
    always often sometimes before while during without within
    """
)

_EMBED_SCALE = 1.0  # token embeddings ~ N(0, 1): word identity dominates
_SMALL_SCALE = 0.1  # position / token-type embeddings are small perturbations


def _tokenizer_pipeline() -> tuple[normalizers.Normalizer, pre_tokenizers.PreTokenizer]:
    normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    return normalizer, pre_tokenizers.BertPreTokenizer()


def _build_vocab(corpus: list[str] | None) -> dict[str, int]:
    normalizer, pre_tokenizer = _tokenizer_pipeline()
    chars = string.ascii_lowercase + string.digits
    ordered: list[str] = list(SPECIAL_TOKENS)
    ordered += list(chars)
    ordered += ["##" + c for c in chars]
    ordered += list(string.punctuation)
    ordered += list(COMMON_WORDS) + list(DOMAIN_WORDS)
    for text in corpus or []:
        normalized = normalizer.normalize_str(text)
        ordered += [piece for piece, _ in pre_tokenizer.pre_tokenize_str(normalized)]
    vocab: dict[str, int] = {}
    for token in ordered:
        if token and token not in vocab:
            vocab[token] = len(vocab)
    return vocab


def _build_tokenizer(vocab: dict[str, int]) -> Tokenizer:
    normalizer, pre_tokenizer = _tokenizer_pipeline()
    tokenizer = Tokenizer(
        models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100)
    )
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return tokenizer


def _build_onnx(
    vocab_size: int,
    hidden: int,
    max_positions: int,
    seed: int,
    tied: list[list[int]] | None = None,
) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    f32 = np.float32
    tok_emb = (rng.standard_normal((vocab_size, hidden)) * _EMBED_SCALE).astype(f32)
    tok_emb[0] = 0.0  # [PAD]
    for group in tied or []:  # synonyms share one embedding row: "meaning" for tests
        tok_emb[group[1:]] = tok_emb[group[0]]
    pos_emb = (rng.standard_normal((max_positions, hidden)) * _SMALL_SCALE).astype(f32)
    type_emb = (rng.standard_normal((2, hidden)) * _SMALL_SCALE).astype(f32)
    weight = (rng.standard_normal((hidden, hidden)) / np.sqrt(hidden)).astype(f32)
    bias = (rng.standard_normal(hidden) * _SMALL_SCALE).astype(f32)

    inits = [
        numpy_helper.from_array(tok_emb, "tok_emb"),
        numpy_helper.from_array(pos_emb, "pos_emb"),
        numpy_helper.from_array(type_emb, "type_emb"),
        numpy_helper.from_array(weight, "W"),
        numpy_helper.from_array(bias, "b"),
        numpy_helper.from_array(np.array(0, dtype=np.int64), "zero_i"),
        numpy_helper.from_array(np.array(1, dtype=np.int64), "one_i"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_seq"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "axis_last"),
        numpy_helper.from_array(np.array(1e-9, dtype=f32), "eps"),
        numpy_helper.from_array(np.array(0.5, dtype=f32), "ctx_scale"),
    ]
    node = helper.make_node
    nodes = [
        # embeddings: token + position + token type
        node("Gather", ["tok_emb", "input_ids"], ["e_tok"], axis=0),
        node("Shape", ["input_ids"], ["ids_shape"]),
        node("Gather", ["ids_shape", "one_i"], ["seq_len"], axis=0),
        node("Range", ["zero_i", "seq_len", "one_i"], ["positions"]),
        node("Gather", ["pos_emb", "positions"], ["e_pos"], axis=0),
        node("Gather", ["type_emb", "token_type_ids"], ["e_type"], axis=0),
        node("Add", ["e_tok", "e_pos"], ["e_sum1"]),
        node("Add", ["e_sum1", "e_type"], ["x"]),
        # per-token layer with residual: h = x + tanh(x W + b)
        node("MatMul", ["x", "W"], ["xw"]),
        node("Add", ["xw", "b"], ["xwb"]),
        node("Tanh", ["xwb"], ["t1"]),
        node("Add", ["x", "t1"], ["h"]),
        # masked mean of h over the sequence (padding excluded)
        node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        node("Unsqueeze", ["mask_f", "axis_last"], ["mask3"]),
        node("Mul", ["h", "mask3"], ["h_masked"]),
        node("ReduceSum", ["h_masked", "axis_seq"], ["h_sum"], keepdims=1),
        node("ReduceSum", ["mask3", "axis_seq"], ["m_sum"], keepdims=1),
        node("Max", ["m_sum", "eps"], ["m_den"]),
        node("Div", ["h_sum", "m_den"], ["ctx"]),
        node("Mul", ["ctx", "ctx_scale"], ["ctx_scaled"]),
        # mix the sentence context into every token, then squash
        node("Add", ["h", "ctx_scaled"], ["mixed"]),
        node("Tanh", ["mixed"], ["last_hidden_state"]),
    ]
    int_inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
        for name in ("input_ids", "attention_mask", "token_type_ids")
    ]
    output = helper.make_tensor_value_info(
        "last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", hidden]
    )
    graph = helper.make_graph(nodes, "tiny_bert", int_inputs, [output], initializer=inits)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17)],
        producer_name="milvus-rag-tests",
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def make_tiny_model(
    target_dir: pathlib.Path,
    corpus: list[str] | None = None,
    hidden: int = 32,
    max_length: int = 128,
    seed: int = 0,
    synonyms: list[tuple[str, ...]] | None = None,
) -> pathlib.Path:
    """Write a tiny Hugging Face-style model folder with an ONNX encoder.

    The vocabulary holds the special tokens, single letters/digits (and their
    ``##`` continuations, so unknown words decompose into characters), ASCII
    punctuation, a built-in list of common English and Milvus/RAG words, and
    every word of ``corpus``.  Outputs for real tokens do not depend on the
    amount of trailing padding.  Words in one ``synonyms`` group get the same
    token embedding, so a paraphrase embeds close to the original while sharing
    no keyword with it.  Returns ``target_dir``.
    """
    if hidden < 1:
        raise ValueError("hidden must be a positive integer")
    target_dir = pathlib.Path(target_dir)
    target_dir.mkdir(parents=True, exist_ok=True)

    words = [w for group in synonyms or [] for w in group]
    vocab = _build_vocab([*(corpus or []), *words])
    max_positions = max(max_length, 512)
    tokenizer = _build_tokenizer(vocab)
    tokenizer.save(str(target_dir / "tokenizer.json"))
    (target_dir / "vocab.txt").write_text(
        "".join(token + "\n" for token in vocab), encoding="utf-8"
    )

    special = {
        "pad_token": "[PAD]",
        "unk_token": "[UNK]",
        "cls_token": "[CLS]",
        "sep_token": "[SEP]",
        "mask_token": "[MASK]",
    }
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": max_length,
        "do_lower_case": True,
        "padding_side": "right",
        "truncation_side": "right",
        "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
        "clean_up_tokenization_spaces": False,
        **special,
    }
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_size": hidden,
        "num_attention_heads": 2 if hidden % 2 == 0 else 1,
        "num_hidden_layers": 1,
        "intermediate_size": hidden * 2,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "max_position_embeddings": max_positions,
        "type_vocab_size": 2,
        "vocab_size": len(vocab),
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "pad_token_id": vocab["[PAD]"],
    }
    files = {
        "tokenizer_config.json": tokenizer_config,
        "special_tokens_map.json": special,
        "config.json": config,
    }
    for name, payload in files.items():
        (target_dir / name).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")

    tied = [[vocab[w.lower()] for w in group] for group in synonyms or []]
    model = _build_onnx(len(vocab), hidden, max_positions, seed, tied)
    onnx.save_model(model, str(target_dir / "model.onnx"))
    return target_dir
