using System.Collections.Generic;

namespace Llama.Compiled;

/// <summary>The hyperparameters a model was compiled for (the generated constants, as a value).</summary>
/// <param name="HiddenSize">Width of the residual stream.</param>
/// <param name="IntermediateSize">Width of the SwiGLU feed-forward layer.</param>
/// <param name="LayerCount">Number of decoder layers.</param>
/// <param name="HeadCount">Number of query heads.</param>
/// <param name="KvHeadCount">Number of key/value heads (grouped-query attention).</param>
/// <param name="HeadDim">Width of one attention head.</param>
/// <param name="VocabSize">Number of tokens in the vocabulary (rows of the embedding and the classifier).</param>
/// <param name="MaxContext">Positions a session's KV cache holds.</param>
/// <param name="RmsNormEps">Epsilon of RMSNorm.</param>
/// <param name="RopeTheta">Base of the RoPE frequencies.</param>
/// <param name="TiedEmbeddings">True when the classifier reuses the token embedding.</param>
/// <param name="BosTokenId">Beginning-of-sequence token id.</param>
/// <param name="EosTokenIds">End-of-sequence token ids (Llama 3 has several).</param>
public sealed record LlamaModelShape(
    int HiddenSize,
    int IntermediateSize,
    int LayerCount,
    int HeadCount,
    int KvHeadCount,
    int HeadDim,
    int VocabSize,
    int MaxContext,
    float RmsNormEps,
    float RopeTheta,
    bool TiedEmbeddings,
    int BosTokenId,
    IReadOnlyList<int> EosTokenIds);
