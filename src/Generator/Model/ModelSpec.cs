namespace Llama.Compiled.Generator.Model;

/// <summary>
/// A validated LLaMA-family config (Hugging Face <c>config.json</c>), with every derived value
/// resolved: what the planner needs and nothing that ties it to a compilation.
/// </summary>
/// <param name="QkvBias">q_proj, k_proj and v_proj have bias vectors (Qwen2, or attention_bias).</param>
/// <param name="OutputBias">o_proj has a bias vector (attention_bias).</param>
/// <param name="MlpBias">gate_proj, up_proj and down_proj have bias vectors (mlp_bias).</param>
/// <param name="RopeScaling">rope_scaling, or null for plain RoPE.</param>
/// <param name="TorchDtype">torch_dtype as the config states it ("" if absent), for the header.</param>
/// <param name="StoredFormats">Every matrix's format as a GGUF file stores it (null for a config.json, whose weights take the attribute's format).</param>
/// <param name="RopeFrequencyFactors">
/// A GGUF's rope_freqs.weight (Llama 3's scaling as llama.cpp's converter stores it): HeadDim/2 factors that divide the
/// inverse frequencies, one per rotated pair; empty when the model has none.
/// </param>
internal sealed record ModelSpec(
    string ModelType,
    int HiddenSize,
    int IntermediateSize,
    int LayerCount,
    int HeadCount,
    int KvHeadCount,
    int HeadDim,
    int VocabSize,
    int MaxContext,
    double RmsNormEps,
    double RopeTheta,
    bool TiedEmbeddings,
    int BosTokenId,
    EquatableArray<int> EosTokenIds,
    bool QkvBias,
    bool OutputBias,
    bool MlpBias,
    RopeScaling? RopeScaling,
    string TorchDtype,
    StoredFormats? StoredFormats = null,
    EquatableArray<float> RopeFrequencyFactors = default)
{
    /// <summary>Width of all query heads together.</summary>
    public int QueryDim => HeadCount * HeadDim;

    /// <summary>Width of all key (or value) heads together.</summary>
    public int KvDim => KvHeadCount * HeadDim;

    /// <summary>Query heads that share one key/value head.</summary>
    public int GroupSize => HeadCount / KvHeadCount;
}

/// <summary>
/// rope_scaling: how the RoPE frequencies are stretched for long contexts. Applied by the
/// generator when it computes the inverse frequencies, so the runtime never sees it.
/// </summary>
/// <param name="Type">"llama3" or "linear".</param>
/// <param name="Factor">factor: how much longer than the original context the model runs.</param>
/// <param name="LowFreqFactor">llama3's low_freq_factor.</param>
/// <param name="HighFreqFactor">llama3's high_freq_factor.</param>
/// <param name="OriginalMaxPositions">llama3's original_max_position_embeddings.</param>
internal sealed record RopeScaling(string Type, double Factor, double LowFreqFactor, double HighFreqFactor, int OriginalMaxPositions);

/// <summary>
/// The format each matrix is stored in, read from a GGUF header at build time: the compiled kernels compute with these
/// formats as they are. BF16 tensors appear as F32 (their exact conversion at load).
/// </summary>
/// <param name="TokenEmbedding">token_embd.weight.</param>
/// <param name="Classifier">output.weight, or null when the file has none (tied embeddings).</param>
/// <param name="Layers">Per layer, in order.</param>
internal sealed record StoredFormats(ComputeFormat TokenEmbedding, ComputeFormat? Classifier, EquatableArray<LayerFormats> Layers);

/// <summary>The stored formats of one layer's seven matrices.</summary>
internal sealed record LayerFormats(
    ComputeFormat Query,
    ComputeFormat Key,
    ComputeFormat Value,
    ComputeFormat Output,
    ComputeFormat Gate,
    ComputeFormat Up,
    ComputeFormat Down);
