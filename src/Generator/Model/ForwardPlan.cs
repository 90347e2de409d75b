using System.Linq;

namespace Llama.Compiled.Generator.Model;

/// <summary>
/// One matrix-product kernel: <c>y[t] = W[Rows, Cols] · x[t]</c> for a batch of tokens.
/// Every projection of that shape shares it.
/// </summary>
/// <param name="Rows">Output features (rows of the weight matrix).</param>
/// <param name="Cols">Input features (columns).</param>
/// <param name="Format">The format of W the kernel reads.</param>
/// <param name="Accumulators">Independent Vector256 sums per row in the one-token loop, to hide FMA latency.</param>
/// <param name="DecodeRows">
/// 4 when the one-token loop has a four-row pass (rows sharing each load of x), taken when the model's weights fit the
/// running machine's last-level cache (decided at run time where the model's size makes it a question, see
/// ForwardPlanner.CacheChoiceAtRunTime); 1 when rows only stream.
/// </param>
/// <param name="DecodeWide">
/// The streaming one-token loop has a 512-bit variant, taken when the CPU has 512-bit vectors and the weights start a
/// cache line; with DecodeRows 4 both exist and the cache decides between them.
/// </param>
/// <param name="PrefillPanel">
/// Prefill packs x transposed into panels of 64 tokens (the runtime's TokenPanel) and computes 6 rows × 64 tokens per
/// pass in the GEMM's outer-product form (F32 rows of whole Vector256); the token tiles then take only the tokens after
/// the last panel.
/// </param>
/// <param name="PrefillRows">Rows per prefill tile (2 × TokenTile sums), or 1 where the shape does not allow pairs.</param>
/// <param name="DecodePrefetch">Bytes ahead of the current row at which the one-token loop prefetches the weights (0: none).</param>
/// <param name="PrefillSplit">Rows are a whole number of cache lines (16 floats), so a batch of tokens can be split by rows without false sharing.</param>
/// <param name="RowBlock">Rows whose weights stay in cache while every token tile of a prefill chunk passes over them.</param>
/// <param name="Uses">The weights that use this kernel, for its doc comment.</param>
internal sealed record MatMulKernel(int Rows, int Cols, ComputeFormat Format, int Accumulators, int DecodeRows, bool DecodeWide, bool PrefillPanel, int PrefillRows, int DecodePrefetch, bool PrefillSplit, int RowBlock, string Uses)
{
    public string Name => Format == ComputeFormat.F32 ? $"MatMul_{Rows}x{Cols}" : $"MatMul_{Format}_{Rows}x{Cols}";

    /// <summary>True when W is blocks of integers and x is quantized to int8 blocks before the dot products.</summary>
    public bool IsBlockQuantized => FormatFacts.IsBlockQuantized(Format);

    /// <summary>How x is prepared for this kernel.</summary>
    public ActivationKind Activations => FormatFacts.Activations(Format);
}

/// <summary>
/// What the emitter writes: the model, the distinct kernels it needs, and every decision the
/// planner made, so the emitter only turns decisions into text.
/// </summary>
/// <param name="Target">The annotated class.</param>
/// <param name="ConfigPath">The config file the model was compiled from, for the header.</param>
/// <param name="Spec">The validated config.</param>
/// <param name="Formats">The format every matrix is computed in.</param>
/// <param name="LayerKinds">The layers grouped by their matrices' formats: one layer method each.</param>
/// <param name="MatMuls">One kernel per distinct weight format and shape.</param>
/// <param name="TokenTile">Tokens that share one pass over a weight row in batched prefill.</param>
/// <param name="PrefillChunk">Tokens evaluated per layer sweep (bounds the activation buffers).</param>
/// <param name="RopeInverseFrequencies">theta^(-2j/HeadDim) for j &lt; HeadDim/2, computed at build time.</param>
/// <param name="ParallelWork">Multiply-adds from which a call is split across threads.</param>
/// <param name="RowGrain">Rows per unit of work when a matrix is split.</param>
/// <param name="MatrixBytes">Bytes of every matrix one token reads, in the formats computed.</param>
internal sealed record ForwardPlan(
    ModelTarget Target,
    string ConfigPath,
    ModelSpec Spec,
    TensorFormats Formats,
    EquatableArray<LayerKind> LayerKinds,
    EquatableArray<MatMulKernel> MatMuls,
    int TokenTile,
    int PrefillChunk,
    EquatableArray<float> RopeInverseFrequencies,
    long ParallelWork,
    int RowGrain,
    long MatrixBytes)
{
    /// <summary>Widest input of a kernel with 32-block activations (sizes their int8 buffer), 0 if none.</summary>
    public int MaxQuantizedCols => MaxCols(ActivationKind.Q8_0);

    /// <summary>Widest input of a kernel with Q8_1 activations (sizes their int8 buffer), 0 if none.</summary>
    public int MaxOffsetBlockCols => MaxCols(ActivationKind.Q8_1);

    /// <summary>Widest input of a kernel with Q8_K super-block activations (sizes their int8 buffer), 0 if none.</summary>
    public int MaxSuperBlockCols => MaxCols(ActivationKind.Q8_K);

    private int MaxCols(ActivationKind kind) => MatMuls.Where(k => k.Activations == kind).Select(k => k.Cols).DefaultIfEmpty(0).Max();

    public MatMulKernel MatMulFor(ComputeFormat format, int rows, int cols)
    {
        foreach (MatMulKernel kernel in MatMuls)
        {
            if (kernel.Format == format && kernel.Rows == rows && kernel.Cols == cols)
                return kernel;
        }
        throw new System.InvalidOperationException($"no kernel planned for {format} [{rows}, {cols}]");
    }
}

/// <summary>The format every matrix is computed in.</summary>
/// <param name="Embedding">
/// How the token embedding is looked up: F32 rows (stored F32, or converted once at load), or the rows of a
/// stored-layout block format dequantized per token.
/// </param>
/// <param name="Classifier">The classifier's format (the embedding's stored format when tied and compiled from a GGUF).</param>
/// <param name="Layers">Per layer, the seven matrices' formats.</param>
internal sealed record TensorFormats(ComputeFormat Embedding, ComputeFormat Classifier, EquatableArray<LayerFormats> Layers);

/// <summary>Layers whose matrices have the same formats share one layer method.</summary>
/// <param name="Name">The method's name.</param>
/// <param name="Formats">The seven matrices' formats.</param>
/// <param name="Layers">The layers of this kind, ascending.</param>
internal sealed record LayerKind(string Name, LayerFormats Formats, EquatableArray<int> Layers);
