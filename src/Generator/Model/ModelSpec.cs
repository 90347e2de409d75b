namespace Llama.Compiled.Generator.Model;

/// <summary>
/// A validated LLaMA-family config (Hugging Face <c>config.json</c>), with every derived value
/// resolved: what the planner needs and nothing that ties it to a compilation.
/// </summary>
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
    EquatableArray<int> EosTokenIds)
{
    /// <summary>Width of all query heads together.</summary>
    public int QueryDim => HeadCount * HeadDim;

    /// <summary>Width of all key (or value) heads together.</summary>
    public int KvDim => KvHeadCount * HeadDim;

    /// <summary>Query heads that share one key/value head.</summary>
    public int GroupSize => HeadCount / KvHeadCount;
}
