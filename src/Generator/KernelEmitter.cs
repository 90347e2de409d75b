using System.Linq;
using Llama.Compiled.Generator.Model;

namespace Llama.Compiled.Generator;

/// <summary>
/// Writes the nested <c>Kernels</c> class: the planner's decisions as its summary, then each family of kernels
/// from its own emitter, in this order: the entries the forward pass calls (<see cref="FusedJobEmitter"/>), the
/// matrix kernels (<see cref="F32MatMulEmitter"/>, <see cref="BlockMatMulEmitter"/>), RMSNorm (<see cref="NormEmitter"/>),
/// attention (<see cref="AttentionEmitter"/>) and the element-wise kernels (<see cref="ActivationEmitter"/>), and the small
/// helpers they share. Loops run over constant bounds; the only bounds check of a kernel is the length check at its entry.
/// </summary>
internal static class KernelEmitter
{
    /// <summary>Floats per Vector256.</summary>
    internal const int Width = 8;

    public static void Write(SourceWriter w, ForwardPlan plan)
    {
        ModelSpec s = plan.Spec;
        bool cacheChoice = ForwardPlanner.CacheChoiceAtRunTime(plan);
        w.Line("/// <summary>");
        w.Line("/// Kernels specialized to this model's shapes. Planner decisions:");
        foreach (MatMulKernel k in plan.MatMuls)
            w.Line($"/// - {k.Name} ({k.Uses}): one token {DecodeSummary(k, cacheChoice)}; "
                + (k.IsBlockQuantized ? BlockMatMulEmitter.PrefillSummary(k, plan.TokenTile)
                    : k.PrefillPanel ? $"in prefill panels of 64 transposed tokens, 6 rows × 64 tokens per pass (6 × 16 without Vector512), and after them {k.PrefillRows} row(s) × {plan.TokenTile} tokens per pass over blocks of {k.RowBlock} rows"
                    : $"in prefill {k.PrefillRows} row(s) × {plan.TokenTile} tokens per pass over blocks of {k.RowBlock} rows")
                + (k.PrefillSplit ? "." : $", on one thread ({k.Rows} rows are not whole cache lines: a split would share lines)."));
        if (plan.Spec.StoredFormats is null)
        {
            foreach (MatMulKernel k in plan.MatMuls.Where(k => !FormatFacts.Fits(BaseFormat(plan.Target.Weights), k.Cols)))
                w.Line($"/// - {k.Name} is {k.Format} although {plan.Target.Weights} was asked for: its {k.Cols} columns do not split into {FormatFacts.BlockWeights(BaseFormat(plan.Target.Weights))}-weight blocks (llama.cpp's fallback).");
        }
        if (plan.LayerKinds.Count > 1)
            w.Line($"/// - The layers' matrices differ in format between layers: {plan.LayerKinds.Count} layer methods, one per combination.");
        w.Line($"/// - A session evaluates up to {plan.PrefillChunk} tokens per sweep through the layers (a batch its MaxTokens, several sessions' tokens together); decode is the same path with one row per sequence.");
        w.Line($"/// - Attention: {s.GroupSize} query head(s) per KV head, HeadDim {s.HeadDim} {(s.HeadDim % Width == 0 ? $"= {s.HeadDim / Width} Vector256" : "(scalar: not a multiple of 8)")}; "
            + $"tiles of {AttentionEmitter.TileRows(s)} positions with an online softmax, each key and value row read once for the {(s.GroupSize > 1 ? "whole group" : "head")}"
            + (s.HeadDim % Width == 0 && s.HeadDim / Width <= 8 ? ", key rows and output rows in registers." : " (rows too wide for registers: loops over HeadDim)."));
        if (cacheChoice)
        {
            w.Line($"/// - The matrices one token reads take {plan.MatrixBytes / 1024 / 1024} MB: whether they stay in the last-level cache between tokens is");
            w.Line("///   the running machine's fact (MachineProfile.LastLevelCacheBytes), read once; it picks the one-token loops above.");
        }
        w.Line($"/// - Threads: a call is split by rows (by row × KV head for attention) across the pass's worker pool when it has at least");
        w.Line($"///   MachineProfile.ParallelWork multiply-adds (read at run time; {plan.ParallelWork} unless the app sets it); smaller calls run on the");
        w.Line("///   calling thread, where splitting would cost more than it saves.");
        w.Line($"///   Row ranges are multiples of {plan.RowGrain} rows so that threads never write the same cache line.");
        w.Line($"/// - q_proj, k_proj and v_proj run as one job over their {s.QueryDim + 2 * s.KvDim} rows together; gate_proj, up_proj and SwiGLU as one");
        w.Line($"///   job per row range: one pass over the pool (and one quantization of the input) instead of three.");
        w.Line(plan.MaxQuantizedCols > 0
            ? "/// - The RMSNorm before each is the fused job's input stage; for Q8_0 activations it is fused with quantizing them (one pass, no float copy)."
            : "/// - The RMSNorm before each is the fused job's input stage: each token is normalized once, before the rows are split.");
        if (plan.MaxSuperBlockCols > 0 || plan.MaxOffsetBlockCols > 0)
            w.Line("///   The K formats' Q8_K super-blocks (and Q4_1/Q5_1's Q8_1 blocks) are quantized from the normalized floats, as llama.cpp quantizes them.");
        w.Line("/// - Every kernel is compiled fully optimized at its first call ([MethodImpl(AggressiveOptimization)]): a prefill runs a few");
        w.Line("///   times per conversation, too few calls for tiered compilation to leave tier-0 code before it matters. Helpers that ask");
        w.Line("///   to be inlined carry it too, for where the JIT declines (a 4-token row product can be too large to inline).");
        w.Line("/// </summary>");
        w.Line(GeneratorIdentity.GeneratedCodeAttribute);
        using (w.Block("private static class Kernels"))
        {
            w.Line($$"""
                /// <summary>Rows per unit of work when a matrix is split across threads: 16 floats = one cache line of y.</summary>
                private const int RowGrain = {{plan.RowGrain}};

                """);
            if (cacheChoice)
            {
                w.Line($$"""
                    /// <summary>Bytes of the matrices one token reads, in their compute formats.</summary>
                    private const long MatrixBytes = {{plan.MatrixBytes}};
                    /// <summary>True when they stay in this machine's last-level cache between tokens: the one-token loops then compute rather than stream.</summary>
                    private static readonly bool WeightsFitCache = MachineProfile.FitsLastLevelCache(MatrixBytes);

                    """);
            }
            // Projections called on their own (o_proj, down_proj, the classifier); q/k/v and gate/up go through their fused jobs below.
            foreach (MatMulKernel kernel in plan.MatMuls.Where(k => (k.Rows == s.HiddenSize && k.Cols == s.QueryDim) || (k.Rows == s.HiddenSize && k.Cols == s.IntermediateSize)
                || (k.Rows == s.VocabSize && k.Cols == s.HiddenSize)))
            {
                FusedJobEmitter.WriteDispatcher(w, kernel);
                w.Line();
            }
            foreach (LayerFormats formats in FusedJobEmitter.DistinctQkv(plan))
            {
                FusedJobEmitter.WriteQkv(w, plan, formats);
                w.Line();
            }
            foreach (LayerFormats formats in FusedJobEmitter.DistinctGateUp(plan))
            {
                FusedJobEmitter.WriteGateUp(w, plan, formats);
                w.Line();
            }
            FusedJobEmitter.WriteAttentionDispatcher(w, s);
            w.Line();
            foreach (MatMulKernel kernel in plan.MatMuls)
            {
                if (kernel.IsBlockQuantized)
                    BlockMatMulEmitter.Write(w, kernel, plan.TokenTile, cacheChoice);
                else
                    F32MatMulEmitter.Write(w, kernel, plan.TokenTile, ForwardPlanner.DecodeStreams(kernel, cacheChoice));
                w.Line();
            }
            // The group products of the kernel-layout formats (Q8_0, Q4_0, Q4_K) and Q6_K's prefill tile depend on the row width
            // only: one set per distinct format and width (the other block formats' row products are the runtime's QuantizedRows,
            // shared by every shape).
            foreach ((ComputeFormat format, int cols) in plan.MatMuls.Where(k => HasGroupProducts(k.Format)).Select(k => (k.Format, k.Cols)).Distinct())
            {
                BlockMatMulEmitter.WriteGroupProducts(w, format, cols, plan.TokenTile);
                w.Line();
            }
            NormEmitter.Write(w, plan);
            w.Line();
            AttentionEmitter.Write(w, s);
            w.Line();
            ActivationEmitter.WriteSwiGlu(w);
            w.Line();
            if (plan.MatMuls.Any(k => HasGroupProducts(k.Format)))
            {
                BlockMatMulEmitter.WriteStoreGroup(w);
                w.Line();
            }
            if (s.QkvBias || s.OutputBias || s.MlpBias)
                ActivationEmitter.WriteAddBias(w);
            w.Line("""
                [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
                private static void Store(ref float y, float value, bool accumulate) => y = accumulate ? y + value : value;

                /// <summary>Runs <paramref name="job"/> over [0, items) on the pool when the call is worth splitting, else on this thread.</summary>
                [MethodImpl(MethodImplOptions.AggressiveOptimization)]
                private static void Run<TJob>(WorkerPool pool, ref TJob job, long work, int items, int grain) where TJob : struct, IParallelJob
                {
                    if (work >= MachineProfile.ParallelWork && pool.Threads > 1)
                        pool.For(ref job, items, grain);
                    else
                        job.Execute(0, items, 0);
                }
                """);
        }
    }

    /// <summary>Whether kernels of <paramref name="format"/> call generated group products (and StoreGroup).</summary>
    private static bool HasGroupProducts(ComputeFormat format) => FormatFacts.InKernelLayout(format) || format == ComputeFormat.Q6_K;

    /// <summary>The single format a mix is mostly made of (Q4_K for Q4_K_M), or the format itself.</summary>
    private static ComputeFormat BaseFormat(ComputeFormat requested) => requested switch
    {
        ComputeFormat.Q4_K_M or ComputeFormat.Q4_K_S => ComputeFormat.Q4_K,
        ComputeFormat.Q5_K_M or ComputeFormat.Q5_K_S => ComputeFormat.Q5_K,
        _ => requested,
    };

    /// <summary>The one-token loop of a matrix kernel, for the summary.</summary>
    private static string DecodeSummary(MatMulKernel k, bool cacheChoice)
    {
        if (k.IsBlockQuantized)
            return BlockMatMulEmitter.DecodeSummary(k, cacheChoice);
        string streaming = $"{k.Accumulators} Vector256 sum(s) per row{(k.DecodeWide ? " (4 Vector512 sums when the CPU has them and W starts a cache line)" : "")}";
        if (k.DecodeRows != 4)
            return streaming;
        return ForwardPlanner.DecodeStreams(k, cacheChoice)
            ? $"4 rows per pass with 2 Vector256 sums each when the weights fit this machine's last-level cache, else {streaming}"
            : "4 rows per pass with 2 Vector256 sums each";
    }
}
