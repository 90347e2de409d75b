using System.Linq;
using Llama.Compiled.Generator.Model;

namespace Llama.Compiled.Generator;

/// <summary>
/// The public entries of the kernels that the forward pass calls: a dispatcher per standalone projection, the fused
/// q/k/v and gate/up/SwiGLU jobs with their RMSNorm input stage, and the attention job, each split by rows (by token ×
/// KV head for attention) across the worker pool when it is worth it.
/// </summary>
internal static class FusedJobEmitter
{
    /// <summary>
    /// The multiply-adds a call reports to <c>Run</c>. A kernel whose output rows are not a whole number of
    /// cache lines reports nothing for a batch of tokens: split by rows, two threads would write the same
    /// line at every token's row boundary (false sharing measured on stories260K's 172-wide feed-forward:
    /// 2-thread prefill slower than 1-thread), so it splits only for one token.
    /// </summary>
    private static string Work(MatMulKernel k, string factor) => k.PrefillSplit
        ? $"{factor} * tokens * {k.Rows} * {k.Cols}"
        : $"tokens == 1 ? {factor} * {k.Rows} * {k.Cols} : 0";

    /// <summary>The weight arguments of a rows kernel: the floats, the packed bytes, or the blocks and their float scales.</summary>
    private static string WeightArgs(MatMulKernel k, string tensor) => k.Format switch
    {
        ComputeFormat.F32 => k.DecodeWide ? $"{tensor}.Span, {tensor}.IsCacheLineAligned" : $"{tensor}.Span",
        _ => $"{tensor}.Bytes",
    };

    /// <summary>The public entry of a matrix kernel: quantizes the input if needed, then runs the rows, threaded or not.</summary>
    public static void WriteDispatcher(SourceWriter w, MatMulKernel k)
    {
        string tensor = k.Format == ComputeFormat.F32 ? "WeightTensor" : "PackedTensor";
        w.Line($$"""
            /// <summary>
            /// y[t] = W·x[t] (y[t] += W·x[t] when <paramref name="accumulate"/>) for t &lt; <paramref name="tokens"/>.
            /// W: {{k.Format}} [{{k.Rows}}, {{k.Cols}}]; x: [tokens, {{k.Cols}}]; y: [tokens, {{k.Rows}}]. Used by {{k.Uses}}.
            /// </summary>
            """);
        if (k.IsBlockQuantized)
        {
            string[] buffers = InputBuffers(k.Activations);
            string quantize = k.Activations switch { ActivationKind.Q8_0 => "QuantizeBlocks", ActivationKind.Q8_1 => "QuantizeQ8_1", _ => "QuantizeQ8K" };
            w.Line($$"""
                [MethodImpl(MethodImplOptions.AggressiveOptimization)]
                public static void {{k.Name}}(WorkerPool pool, {{tensor}} w, float[] x, float[] y, int tokens, bool accumulate, {{Parameters(buffers)}})
                {
                    BlockKernels.{{quantize}}(x.AsSpan(0, tokens * {{k.Cols}}), {{string.Join(", ", buffers)}});
                    var job = new {{k.Name}}Job(w, {{string.Join(", ", buffers)}}, y, tokens, accumulate);
                    Run(pool, ref job, {{Work(k, "1L")}}, {{k.Rows}}, RowGrain);
                }

                private struct {{k.Name}}Job(PackedTensor w, {{Parameters(buffers)}}, float[] y, int tokens, bool accumulate) : IParallelJob
                {
                    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
                    public void Execute(int start, int end, int worker) => {{k.Name}}Rows(w.Bytes, {{string.Join(", ", buffers)}}, y, tokens, accumulate, start, end);
                }
                """);
        }
        else
        {
            w.Line($$"""
                [MethodImpl(MethodImplOptions.AggressiveOptimization)]
                public static void {{k.Name}}(WorkerPool pool, {{tensor}} w, float[] x, float[] y, int tokens, bool accumulate)
                {
                    var job = new {{k.Name}}Job(w, x, y, tokens, accumulate);
                    Run(pool, ref job, {{Work(k, "1L")}}, {{k.Rows}}, RowGrain);
                }

                private struct {{k.Name}}Job({{tensor}} w, float[] x, float[] y, int tokens, bool accumulate) : IParallelJob
                {
                    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
                    public void Execute(int start, int end, int worker) => {{k.Name}}Rows({{WeightArgs(k, "w")}}, x, y, tokens, accumulate, start, end);
                }
                """);
        }
    }

    /// <summary>The activation buffers a kernel of one kind reads (the floats themselves for F32/F16).</summary>
    private static string[] InputBuffers(ActivationKind kind) => kind switch
    {
        ActivationKind.Floats => ["xNormed"],
        ActivationKind.Q8_0 => ["xQuantized", "xScales", "xSums"],
        ActivationKind.Q8_1 => ["xQ81", "xQ81Scales", "xQ81Sums"],
        _ => ["xSuper", "xSuperScales", "xSuperSums"],
    };

    private static string ParameterType(string buffer) => buffer switch
    {
        "xQuantized" or "xQ81" or "xSuper" => "sbyte[]",
        "xSums" => "int[]",
        "xSuperSums" => "short[]",
        _ => "float[]",
    };

    private static string Parameters(System.Collections.Generic.IEnumerable<string> buffers) => string.Join(", ", buffers.Select(b => $"{ParameterType(b)} {b}"));

    /// <summary>The arguments of a kernel's rows method for its input: the normalized floats or its kind of int8 activations.</summary>
    private static string InputArgs(MatMulKernel k) => string.Join(", ", InputBuffers(k.Activations));

    /// <summary>The q/k/v kernels of a layer whose matrices have the formats <paramref name="f"/>.</summary>
    public static MatMulKernel[] QkvKernels(ForwardPlan plan, LayerFormats f)
    {
        ModelSpec s = plan.Spec;
        return [plan.MatMulFor(f.Query, s.QueryDim, s.HiddenSize), plan.MatMulFor(f.Key, s.KvDim, s.HiddenSize), plan.MatMulFor(f.Value, s.KvDim, s.HiddenSize)];
    }

    /// <summary>The gate/up kernels of a layer whose matrices have the formats <paramref name="f"/>.</summary>
    public static MatMulKernel[] GateUpKernels(ForwardPlan plan, LayerFormats f)
    {
        ModelSpec s = plan.Spec;
        return [plan.MatMulFor(f.Gate, s.IntermediateSize, s.HiddenSize), plan.MatMulFor(f.Up, s.IntermediateSize, s.HiddenSize)];
    }

    /// <summary>"Qkv", or with several format combinations among the layers "Qkv_Q4_K_Q4_K_Q6_K".</summary>
    public static string QkvName(ForwardPlan plan, LayerFormats f) =>
        Name("Qkv", plan.LayerKinds.Select(kind => QkvKernels(plan, kind.Formats)), QkvKernels(plan, f));

    /// <summary>"GateUp", or with several format combinations among the layers "GateUp_Q4_K_Q4_K".</summary>
    public static string GateUpName(ForwardPlan plan, LayerFormats f) =>
        Name("GateUp", plan.LayerKinds.Select(kind => GateUpKernels(plan, kind.Formats)), GateUpKernels(plan, f));

    private static string Name(string job, System.Collections.Generic.IEnumerable<MatMulKernel[]> all, MatMulKernel[] these) =>
        all.Select(Formats).Distinct().Count() == 1 ? job : job + "_" + Formats(these);

    private static string Formats(MatMulKernel[] kernels) => string.Join("_", kernels.Select(k => k.Format));

    /// <summary>The distinct q/k/v (or gate/up) kernel sets of the plan's layer kinds, each with its job's name.</summary>
    public static System.Collections.Generic.IEnumerable<LayerFormats> DistinctQkv(ForwardPlan plan) =>
        plan.LayerKinds.Select(k => k.Formats).GroupBy(f => QkvName(plan, f)).Select(g => g.First());

    public static System.Collections.Generic.IEnumerable<LayerFormats> DistinctGateUp(ForwardPlan plan) =>
        plan.LayerKinds.Select(k => k.Formats).GroupBy(f => GateUpName(plan, f)).Select(g => g.First());

    /// <summary>
    /// q_proj, k_proj and v_proj as one job over their stacked rows: the input is read (and for Q8_0/Q4_0
    /// quantized) once and the pool is woken once.
    /// </summary>
    public static void WriteQkv(SourceWriter w, ForwardPlan plan, LayerFormats formats)
    {
        ModelSpec s = plan.Spec;
        MatMulKernel[] kernels = QkvKernels(plan, formats);
        MatMulKernel q = kernels[0], k = kernels[1], v = kernels[2];
        string name = QkvName(plan, formats);
        string[] buffers = Emitter.ActivationBuffers(kernels, "").ToArray();
        w.Line($$"""
            /// <summary>
            /// q[t] = Wq·n[t], k[t] = Wk·n[t], v[t] = Wv·n[t] with n[t] = RMSNorm(x[t]) ⊙ norm, for t &lt; <paramref name="tokens"/>, split over the
            /// QueryDim + 2·KvDim = {{s.QueryDim + 2 * s.KvDim}} stacked rows. Wq: {{q.Format}} [{{s.QueryDim}}, {{s.HiddenSize}}]; {{(k.Format == v.Format ? $"Wk, Wv: {k.Format}" : $"Wk: {k.Format}, Wv: {v.Format}")}} [{{s.KvDim}}, {{s.HiddenSize}}];
            /// norm: [{{s.HiddenSize}}]; x: [tokens, {{s.HiddenSize}}]; q: [tokens, {{s.QueryDim}}]; k, v: [tokens, {{s.KvDim}}].
            /// </summary>
            [MethodImpl(MethodImplOptions.AggressiveOptimization)]
            public static void {{name}}(WorkerPool pool, WeightTensor norm, {{TensorType(q)}} wq, {{TensorType(k)}} wk, {{TensorType(v)}} wv, float[] x, {{Parameters(buffers)}}, float[] q, float[] k, float[] v, int tokens)
            {
            """);
        WriteNormInput(w, kernels);
        string[] jobBuffers = JobBuffers(kernels);
        w.Line($$"""
                var job = new {{name}}Job(wq, wk, wv, {{string.Join(", ", jobBuffers)}}, q, k, v, tokens);
                Run(pool, ref job, (long)tokens * (QueryDim + 2 * KvDim) * HiddenSize, QueryDim + 2 * KvDim, RowGrain);
            }

            private struct {{name}}Job({{TensorType(q)}} wq, {{TensorType(k)}} wk, {{TensorType(v)}} wv, {{Parameters(jobBuffers)}}, float[] q, float[] k, float[] v, int tokens) : IParallelJob
            {
                [MethodImpl(MethodImplOptions.AggressiveOptimization)]
                public void Execute(int start, int end, int worker)
                {
                    // Stacked rows: [0, QueryDim) of q, then KvDim rows of k, then KvDim rows of v.
                    if (start < QueryDim)
                        {{q.Name}}Rows({{WeightArgs(q, "wq")}}, {{InputArgs(q)}}, q, tokens, accumulate: false, start, Math.Min(end, QueryDim));
                    if (end > QueryDim && start < QueryDim + KvDim)
                        {{k.Name}}Rows({{WeightArgs(k, "wk")}}, {{InputArgs(k)}}, k, tokens, accumulate: false, Math.Max(start, QueryDim) - QueryDim, Math.Min(end, QueryDim + KvDim) - QueryDim);
                    if (end > QueryDim + KvDim)
                        {{v.Name}}Rows({{WeightArgs(v, "wv")}}, {{InputArgs(v)}}, v, tokens, accumulate: false, Math.Max(start, QueryDim + KvDim) - QueryDim - KvDim, end - QueryDim - KvDim);
                }
            }
            """);
    }

    private static string TensorType(MatMulKernel k) => k.Format == ComputeFormat.F32 ? "WeightTensor" : "PackedTensor";

    /// <summary>The buffers the job's rows read: the session's buffers less the floats that only fed the super-block quantization.</summary>
    private static string[] JobBuffers(MatMulKernel[] kernels) =>
        Emitter.ActivationBuffers(kernels, "").Where(b => b != "xNormed" || kernels.Any(k => k.Activations == ActivationKind.Floats)).ToArray();

    /// <summary>
    /// The input stage of a projection that follows an RMSNorm: every token is normalized once, before the rows are split
    /// across threads. For Q8_0 activations the norm is fused with quantizing them; Q8_1 blocks and Q8_K super-blocks
    /// are quantized from the normalized floats.
    /// </summary>
    private static void WriteNormInput(SourceWriter w, MatMulKernel[] kernels)
    {
        ActivationKind[] kinds = kernels.Select(k => k.Activations).Distinct().ToArray();
        bool floats = kinds.Contains(ActivationKind.Floats) || kinds.Contains(ActivationKind.Q8_1) || kinds.Contains(ActivationKind.Q8_K);
        bool floatKernels = kinds.Contains(ActivationKind.Floats);
        bool staged = kinds.Contains(ActivationKind.Q8_1) || kinds.Contains(ActivationKind.Q8_K);
        w.Line(floats && kinds.Contains(ActivationKind.Q8_0)
            ? "    // Input stage: each token normalized once into xNormed and, fused with the norm, into int8 blocks, before the rows are split."
            : floatKernels && !staged ? "    // Input stage: each token normalized once into xNormed, before the rows are split; every row's dot product reads it."
            : floats ? "    // Input stage: each token normalized once into xNormed and quantized from it as llama.cpp quantizes this format's activations, before the rows are split."
            : "    // Input stage: RMSNorm fused with quantizing the activations; the normalized floats are never stored.");
        w.Line("    for (int t = 0; t < tokens; t++)");
        bool several = (floats ? 1 : 0) + kinds.Count(k => k != ActivationKind.Floats) > 1;
        if (several)
            w.Line("    {");
        if (floats)
            w.Line("        RmsNorm(x.AsSpan(t * HiddenSize, HiddenSize), norm.Span, xNormed.AsSpan(t * HiddenSize, HiddenSize));");
        if (kinds.Contains(ActivationKind.Q8_0))
        {
            w.Line("        RmsNormQuantize(x.AsSpan(t * HiddenSize, HiddenSize), norm.Span, xQuantized.AsSpan(t * HiddenSize, HiddenSize),");
            w.Line("            xScales.AsSpan(t * (HiddenSize / 32), HiddenSize / 32), xSums.AsSpan(t * (HiddenSize / 32), HiddenSize / 32));");
        }
        if (kinds.Contains(ActivationKind.Q8_1))
        {
            w.Line("        BlockKernels.QuantizeQ8_1(xNormed.AsSpan(t * HiddenSize, HiddenSize), xQ81.AsSpan(t * HiddenSize, HiddenSize),");
            w.Line("            xQ81Scales.AsSpan(t * (HiddenSize / 32), HiddenSize / 32), xQ81Sums.AsSpan(t * (HiddenSize / 32), HiddenSize / 32));");
        }
        if (kinds.Contains(ActivationKind.Q8_K))
        {
            w.Line("        BlockKernels.QuantizeQ8K(xNormed.AsSpan(t * HiddenSize, HiddenSize), xSuper.AsSpan(t * HiddenSize, HiddenSize),");
            w.Line("            xSuperScales.AsSpan(t * (HiddenSize / 256), HiddenSize / 256), xSuperSums.AsSpan(t * (HiddenSize / 16), HiddenSize / 16));");
        }
        if (several)
            w.Line("    }");
    }

    /// <summary>
    /// gate_proj, up_proj, their biases and SwiGLU fused into one job: each thread computes its rows of
    /// both products and applies SiLU(gate) ⊙ up to them while they are still in cache.
    /// </summary>
    public static void WriteGateUp(SourceWriter w, ForwardPlan plan, LayerFormats formats)
    {
        ModelSpec s = plan.Spec;
        MatMulKernel[] kernels = GateUpKernels(plan, formats);
        MatMulKernel k = kernels[0], ku = kernels[1];
        string name = GateUpName(plan, formats);
        string[] buffers = Emitter.ActivationBuffers(kernels, "").ToArray();
        string[] jobBuffers = JobBuffers(kernels);
        string biasParams = s.MlpBias ? ", WeightTensor gateBias, WeightTensor upBias" : "";
        string biasArgs = s.MlpBias ? ", gateBias, upBias" : "";
        w.Line($$"""
            /// <summary>
            /// h[t] = SiLU(Wgate·n[t]) ⊙ (Wup·n[t]) with n[t] = RMSNorm(x[t]) ⊙ norm, for t &lt; <paramref name="tokens"/>, gate_proj, up_proj
            /// and SwiGLU in one pass per row range. {{(k.Format == ku.Format ? $"Wgate, Wup: {k.Format}" : $"Wgate: {k.Format}, Wup: {ku.Format}")}} [IntermediateSize={{k.Rows}}, HiddenSize={{k.Cols}}]; norm: [{{k.Cols}}];
            /// x: [tokens, {{k.Cols}}]; h, up: [tokens, {{k.Rows}}] (up is scratch).
            /// </summary>
            [MethodImpl(MethodImplOptions.AggressiveOptimization)]
            public static void {{name}}(WorkerPool pool, WeightTensor norm, {{TensorType(k)}} gate, {{TensorType(ku)}} up, float[] x, {{Parameters(buffers)}}, float[] h, float[] upOut, int tokens{{biasParams}})
            {
            """);
        WriteNormInput(w, kernels);
        w.Line($$"""
                var job = new {{name}}Job(gate, up, {{string.Join(", ", jobBuffers)}}, h, upOut, tokens{{biasArgs}});
                Run(pool, ref job, {{Work(k, "2L")}}, {{k.Rows}}, RowGrain);
            }

            private struct {{name}}Job({{TensorType(k)}} gate, {{TensorType(ku)}} up, {{Parameters(jobBuffers)}}, float[] h, float[] upOut, int tokens{{biasParams}}) : IParallelJob
            {
                [MethodImpl(MethodImplOptions.AggressiveOptimization)]
                public void Execute(int start, int end, int worker)
                {
                    {{k.Name}}Rows({{WeightArgs(k, "gate")}}, {{InputArgs(k)}}, h, tokens, accumulate: false, start, end);
                    {{ku.Name}}Rows({{WeightArgs(ku, "up")}}, {{InputArgs(ku)}}, upOut, tokens, accumulate: false, start, end);
                    for (int t = 0; t < tokens; t++)
                    {
                        Span<float> gateRows = h.AsSpan(t * IntermediateSize + start, end - start);
                        Span<float> upRows = upOut.AsSpan(t * IntermediateSize + start, end - start);
            """);
        if (s.MlpBias)
        {
            w.Line("""
                            KernelMath.Add(gateRows, gateBias.Span.Slice(start, end - start));
                            KernelMath.Add(upRows, upBias.Span.Slice(start, end - start));
                """);
        }
        w.Line("""
                        SwiGlu(gateRows, upRows);
                    }
                }
            }
            """);
    }

    /// <summary>Attention for a pass's rows, each against its own sequence's cache, split by row × KV head across the pool for long contexts.</summary>
    public static void WriteAttentionDispatcher(SourceWriter w, ModelSpec s)
    {
        w.Line("""
            /// <summary>
            /// Causal attention of a pass's rows: row t attends to positions [0, rows.Position(t)] of its own sequence's cache
            /// (each cache in its own KvCacheFormat), layer <paramref name="layer"/>. q, output: [rows.Count, QueryDim];
            /// scratch: [pool.Threads, AttentionScratch], one block per thread, whatever the rows and their positions.
            /// </summary>
            [MethodImpl(MethodImplOptions.AggressiveOptimization)]
            public static void Attention(WorkerPool pool, float[] q, PassRows rows, int layer, float[] scratch, float[] output)
            {
                var job = new AttentionJob(q, rows, layer, scratch, output);
                Run(pool, ref job, 2L * rows.AttendedPositions * QueryDim, rows.Count * KvHeadCount, grain: 1);
            }

            private struct AttentionJob(float[] q, PassRows rows, int layer, float[] scratch, float[] output) : IParallelJob
            {
                [MethodImpl(MethodImplOptions.AggressiveOptimization)]
                public void Execute(int start, int end, int worker)
                {
                    for (int item = start; item < end; item++)
                    {
                        int t = item / KvHeadCount, kvHead = item % KvHeadCount;
                        AttentionHeads(q.AsSpan(t * QueryDim, QueryDim), rows.Cache(t), layer, rows.Position(t) + 1,
                            scratch.AsSpan(worker * AttentionScratch, AttentionScratch), output.AsSpan(t * QueryDim, QueryDim), kvHead, kvHead + 1);
                    }
                }
            }
            """);
    }
}
