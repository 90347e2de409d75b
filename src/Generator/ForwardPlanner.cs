using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;
using Llama.Compiled.Generator.Model;

namespace Llama.Compiled.Generator;

/// <summary>
/// Decides how the forward pass of a <see cref="ModelSpec"/> is computed: which distinct kernels
/// exist, how they are unrolled, how prefill is batched. Deterministic and cheap; every decision
/// ends up stated in the generated code's header comment.
/// </summary>
internal static class ForwardPlanner
{
    /// <summary>Floats in one Vector256.</summary>
    private const int VectorWidth = 8;

    /// <summary>FMA latency (4 cycles) × throughput (2 per cycle) on AVX2 cores: 4 independent sums keep one port busy.</summary>
    private const int MaxAccumulators = 4;

    /// <summary>
    /// Four tokens per weight-row pass: one weight vector and four activation vectors and sums
    /// stay within the 16 AVX2 registers, and the row is read from memory once instead of four times.
    /// </summary>
    private const int TokenTile = 4;

    private const int MaxPrefillChunk = 64;

    /// <summary>
    /// The runtime's default for MachineProfile.ParallelWork (multiply-adds from which a call is split across the worker
    /// pool; measured on 2-core EPYC machines, see there). Only the summary states it: the generated code reads
    /// MachineProfile.ParallelWork on the running machine, where an app can set it.
    /// </summary>
    private const long DefaultParallelWork = 1 << 16;

    /// <summary>16 rows: threads' output ranges start on distinct 64-byte cache lines.</summary>
    private const int RowGrain = 16;

    /// <summary>
    /// Weight bytes a prefill row block may hold: half of a 256 KB L2, leaving room for the token tile's
    /// activations, so that the block is read from memory once per chunk instead of once per tile.
    /// </summary>
    private const int RowBlockBytes = 128 * 1024;

    /// <summary>
    /// Whether the weights stay in the last-level cache from one token to the next is the running machine's fact
    /// (MachineProfile.LastLevelCacheBytes), not the build machine's. A model that fits is compute-bound in decode: four
    /// F32 rows per pass share every load of x (5 loads per 4 FMAs instead of 2 per FMA). A larger model streams from
    /// memory, where one row at a time keeps a single sequential stream per thread, which the prefetchers follow best
    /// (measured: stories110M F32 1.2x), and the Q8_0/Q4_0 loops prefetch ahead. Below <see cref="SmallestCacheBytes"/>
    /// every machine holds the weights, above <see cref="LargestCacheBytes"/> none does: only between them does the
    /// generated code carry both one-token loops and choose when it runs.
    /// </summary>
    internal const long SmallestCacheBytes = 4L << 20;

    /// <summary>Weights above which no last-level cache holds them (1 GB; the largest seen here report 300 MB).</summary>
    internal const long LargestCacheBytes = 1L << 30;

    /// <summary>True when the generated code chooses its one-token loops at run time from the machine's cache size.</summary>
    internal static bool CacheChoiceAtRunTime(ForwardPlan plan) => plan.MatrixBytes is > SmallestCacheBytes and <= LargestCacheBytes;

    /// <summary>
    /// How far ahead the Q8_0/Q4_0 one-token loop of a model that streams from memory prefetches its weights. The
    /// hardware prefetchers alone keep one thread's stream at ~87 % of the measured bandwidth while the kernel works;
    /// asking for each row a few KB ahead lets it stream at nearly the rate of a plain read. Measured on a 1 GB
    /// Q8_0 matrix, one thread, in one run: none 32.3, 2 KB 33.1, 4 KB 35.8, 6 KB 37.2–37.5, 8 KB 36.6 GB/s (in
    /// another run 8 KB equalled a plain 39.4 GB/s read); with two threads on TinyLlama, 8 KB was 3 % slower than
    /// none where 4–6 KB were not. F32 rows, read with 512-bit loads, already stream at the plain rate.
    /// </summary>
    private const int DecodePrefetchBytes = 6144;

    /// <summary>
    /// How far ahead the K formats' row products (Q4_K, Q5_K, Q6_K: the runtime's QuantizedRows) prefetch, a few lines
    /// with each super-block rather than a whole row before it. Their arithmetic is denser per byte than Q8_0's, and a
    /// burst of a row's 18–70 prefetches stalled it: on 640 MB of Q4_K rows, one thread, medians of 5 interleaved
    /// passes in one run (a shared, loaded machine), 2048-wide rows: whole row 6 KB ahead 7.4, 8 KB 8.5; per
    /// super-block 4 KB 8.2, 6 KB 9.3, 8 KB 9.9, 12 KB 11.8 GB/s (another run: 12 KB 7.7, 24 KB 7.4, 32 KB 8.9);
    /// 5632-wide: whole row 6.6/6.5, per super-block 4–12 KB 8.5–8.7 GB/s.
    /// </summary>
    private const int SuperBlockPrefetchBytes = 8192;

    /// <summary>Prefetch distance for a model that may stream from memory (when the code runs, only if it does not fit the cache).</summary>
    private static int DecodePrefetch(ComputeFormat format, long modelBytes) =>
        !FormatFacts.IsBlockQuantized(format) || modelBytes <= SmallestCacheBytes ? 0
            : FormatFacts.Activations(format) == ActivationKind.Q8_K ? SuperBlockPrefetchBytes : DecodePrefetchBytes;

    /// <summary>4: the one-token loop has the four-row pass (taken when the model fits the running machine's cache).</summary>
    private static int DecodeRows(ComputeFormat format, int rows, int cols, long modelBytes) =>
        format == ComputeFormat.F32 && rows % 4 == 0 && cols % VectorWidth == 0 && modelBytes <= LargestCacheBytes ? 4 : 1;

    /// <summary>The one-token loop has the one-row streaming pass: the four-row one is not possible, or the model may not fit.</summary>
    internal static bool DecodeStreams(MatMulKernel k, bool cacheChoiceAtRunTime) => k.DecodeRows == 1 || cacheChoiceAtRunTime;

    /// <summary>
    /// A streaming F32 row read with 512-bit loads where the CPU has them and the weights start a cache line
    /// (so every load is one whole line): measured on TinyLlama F32, one thread, 1.03–1.05× llama.cpp against
    /// 0.98–1.01× with 256-bit loads; 512-bit loads that straddle lines were 20 % slower, hence the runtime check.
    /// Needs whole groups of four 16-float vectors per row.
    /// </summary>
    private static bool DecodeWide(ComputeFormat format, int decodeRows, long modelBytes, int cols) =>
        format == ComputeFormat.F32 && (decodeRows == 1 || modelBytes > SmallestCacheBytes) && cols % (4 * 16) == 0;

    /// <summary>Bytes of every matrix a token reads, in the formats the plan computes them in.</summary>
    internal static long MatrixBytes(ModelSpec s, TensorFormats formats)
    {
        long Bytes(ComputeFormat format, int rows, int cols) => (long)rows * FormatFacts.RowBytes(format, cols);
        long total = Bytes(formats.Classifier, s.VocabSize, s.HiddenSize);
        foreach (LayerFormats layer in formats.Layers)
        {
            total += Bytes(layer.Query, s.QueryDim, s.HiddenSize) + Bytes(layer.Key, s.KvDim, s.HiddenSize) + Bytes(layer.Value, s.KvDim, s.HiddenSize)
                + Bytes(layer.Output, s.HiddenSize, s.QueryDim) + Bytes(layer.Gate, s.IntermediateSize, s.HiddenSize)
                + Bytes(layer.Up, s.IntermediateSize, s.HiddenSize) + Bytes(layer.Down, s.HiddenSize, s.IntermediateSize);
        }
        return total;
    }

    /// <summary>
    /// F32 rows of whole Vector256 are multiplied by panels of transposed activations in prefill: one broadcast weight
    /// times 64 tokens, 24 independent Vector512 sums per pass (6 rows × 4 vectors) from 10 loads, where the dot-product
    /// tiles need a load per FMA. Measured on 768×768 to 5632×2048 F32 matrices, 64 tokens, one thread: the kernel
    /// alone 61–84 G multiply-adds/s against 31–35 for 4 rows × 4 tokens of Vector512 dot products (FMA peak 87).
    /// </summary>
    private static bool PrefillPanel(ComputeFormat format, int cols) => format == ComputeFormat.F32 && cols % VectorWidth == 0;

    /// <summary>
    /// Tokens left after the whole panels from which a padded panel is still faster than the token tiles: a panel
    /// computes all 64 lanes, so n tokens run at n/64 of its rate, and the tiles run at about 40 % of the FMA peak.
    /// </summary>
    internal const int PanelMinTokens = 32;

    /// <summary>Two F32 rows × the token tile: eight independent sums, enough for both FMA ports (needs whole vectors).</summary>
    private static int PrefillRows(ComputeFormat format, int rows, int cols) =>
        format == ComputeFormat.F32 && rows % 2 == 0 && cols % VectorWidth == 0 ? 2 : 1;

    /// <summary>Rows per prefill block: what fits the budget, even (the F32 tile takes rows in pairs), at least 2.</summary>
    private static int RowBlock(int rows, long rowBytes) => (int)Math.Min(rows, Math.Max(2, RowBlockBytes / rowBytes / 2 * 2));

    /// <summary>Weights per Q8_0/Q4_0 block.</summary>
    internal const int QuantBlock = LlamaArchitecture.QuantBlockSize;

    public static ForwardPlan Plan(ModelTarget target, string configPath, ModelSpec spec)
    {
        TensorFormats formats = TensorFormatResolver.Resolve(target.Weights, spec);
        long modelBytes = MatrixBytes(spec, formats);

        // One kernel per distinct (format, shape); its uses, for the doc comment, in the order the layers call them.
        var shapes = new List<(ComputeFormat Format, int Rows, int Cols, List<string> Uses)>();
        void Use(ComputeFormat format, int rows, int cols, string weight)
        {
            foreach (var shape in shapes)
            {
                if (shape.Format == format && shape.Rows == rows && shape.Cols == cols)
                {
                    if (!shape.Uses.Contains(weight))
                        shape.Uses.Add(weight);
                    return;
                }
            }
            shapes.Add((format, rows, cols, new List<string> { weight }));
        }

        foreach (LayerFormats layer in formats.Layers)
        {
            Use(layer.Query, spec.QueryDim, spec.HiddenSize, "q_proj");
            Use(layer.Key, spec.KvDim, spec.HiddenSize, "k_proj");
            Use(layer.Value, spec.KvDim, spec.HiddenSize, "v_proj");
            Use(layer.Output, spec.HiddenSize, spec.QueryDim, "o_proj");
            Use(layer.Gate, spec.IntermediateSize, spec.HiddenSize, "gate_proj");
            Use(layer.Up, spec.IntermediateSize, spec.HiddenSize, "up_proj");
            Use(layer.Down, spec.HiddenSize, spec.IntermediateSize, "down_proj");
        }
        Use(formats.Classifier, spec.VocabSize, spec.HiddenSize, spec.TiedEmbeddings ? "classifier (tied embedding)" : "lm_head");

        var kernels = new List<MatMulKernel>();
        foreach (var (format, rows, cols, uses) in shapes)
        {
            int accumulators = Math.Max(1, Math.Min(MaxAccumulators, cols / VectorWidth));
            int decodeRows = DecodeRows(format, rows, cols, modelBytes);
            kernels.Add(new MatMulKernel(rows, cols, format, accumulators, decodeRows, DecodeWide(format, decodeRows, modelBytes, cols), PrefillPanel(format, cols), PrefillRows(format, rows, cols),
                DecodePrefetch(format, modelBytes), rows % RowGrain == 0, RowBlock(rows, FormatFacts.RowBytes(format, cols)), string.Join(", ", uses)));
        }

        return new ForwardPlan(
            target,
            configPath,
            spec,
            formats,
            LayerKinds(formats),
            EquatableArray.From(kernels),
            TokenTile,
            Math.Min(MaxPrefillChunk, spec.MaxContext),
            EquatableArray.From(RopeInverseFrequencies(spec)),
            DefaultParallelWork,
            RowGrain,
            modelBytes);
    }

    /// <summary>
    /// Layers grouped by their seven matrix formats: one layer method per group. The most common group (the first on a
    /// tie) is plain <c>Layer</c>; the others are named by the matrices in which they differ from it.
    /// </summary>
    private static EquatableArray<LayerKind> LayerKinds(TensorFormats formats)
    {
        var groups = new List<(LayerFormats Formats, List<int> Layers)>();
        for (int layer = 0; layer < formats.Layers.Count; layer++)
        {
            LayerFormats f = formats.Layers[layer];
            int index = groups.FindIndex(g => g.Formats.Equals(f));
            if (index < 0)
                groups.Add((f, new List<int> { layer }));
            else
                groups[index].Layers.Add(layer);
        }
        LayerFormats common = groups.OrderByDescending(g => g.Layers.Count).First().Formats;
        return EquatableArray.From(groups.Select(g => new LayerKind(KindName(g.Formats, common), g.Formats, EquatableArray.From(g.Layers))));
    }

    private static string KindName(LayerFormats f, LayerFormats common)
    {
        var name = new StringBuilder("Layer");
        void Differs(string role, ComputeFormat format, ComputeFormat usual)
        {
            if (format != usual)
                name.Append('_').Append(role).Append(format);
        }
        Differs("Q", f.Query, common.Query);
        Differs("K", f.Key, common.Key);
        Differs("V", f.Value, common.Value);
        Differs("O", f.Output, common.Output);
        Differs("Gate", f.Gate, common.Gate);
        Differs("Up", f.Up, common.Up);
        Differs("Down", f.Down, common.Down);
        return name.ToString();
    }

    /// <summary>
    /// theta^(-2j/d), divided by a GGUF's rope_freqs.weight factor, stretched as rope_scaling says, rounded to float.
    /// Computed in double, like transformers' float32 result up to rounding; llama2.c's powf gives the same floats, and
    /// llama.cpp's rope computes pos·theta^(-2j/d) / factor[j] in float.
    /// </summary>
    internal static IEnumerable<float> RopeInverseFrequencies(ModelSpec spec)
    {
        for (int j = 0; j < spec.HeadDim / 2; j++)
        {
            double inverseFrequency = 1.0 / Math.Pow(spec.RopeTheta, 2.0 * j / spec.HeadDim);
            if (spec.RopeFrequencyFactors.Count > 0)
                inverseFrequency /= spec.RopeFrequencyFactors[j];
            yield return (float)(spec.RopeScaling is { } scaling ? Scale(inverseFrequency, scaling) : inverseFrequency);
        }
    }

    /// <summary>transformers' _compute_linear_scaling_rope_parameters and _compute_llama3_parameters, per frequency.</summary>
    private static double Scale(double inverseFrequency, RopeScaling scaling)
    {
        if (scaling.Type == "linear")
            return inverseFrequency / scaling.Factor;

        // llama3: long wavelengths are slowed down by factor, short ones kept, the band between blended.
        double lowFreqWavelength = scaling.OriginalMaxPositions / scaling.LowFreqFactor;
        double highFreqWavelength = scaling.OriginalMaxPositions / scaling.HighFreqFactor;
        double wavelength = 2 * Math.PI / inverseFrequency;
        if (wavelength < highFreqWavelength)
            return inverseFrequency;
        if (wavelength > lowFreqWavelength)
            return inverseFrequency / scaling.Factor;
        double smooth = (scaling.OriginalMaxPositions / wavelength - scaling.LowFreqFactor) / (scaling.HighFreqFactor - scaling.LowFreqFactor);
        return (1 - smooth) * inverseFrequency / scaling.Factor + smooth * inverseFrequency;
    }
}
