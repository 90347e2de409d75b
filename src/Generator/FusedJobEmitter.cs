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
        ComputeFormat.F16 => $"{tensor}.Bytes",
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
            w.Line($$"""
                [MethodImpl(MethodImplOptions.AggressiveOptimization)]
                public static void {{k.Name}}(WorkerPool pool, {{tensor}} w, float[] x, float[] y, int tokens, bool accumulate, sbyte[] xQuantized, float[] xScales, int[] xSums)
                {
                    BlockKernels.QuantizeBlocks(x.AsSpan(0, tokens * {{k.Cols}}), xQuantized, xScales, xSums);
                    var job = new {{k.Name}}Job(w, xQuantized, xScales, xSums, y, tokens, accumulate);
                    Run(pool, ref job, {{Work(k, "1L")}}, {{k.Rows}}, RowGrain);
                }

                private struct {{k.Name}}Job(PackedTensor w, sbyte[] xQuantized, float[] xScales, int[] xSums, float[] y, int tokens, bool accumulate) : IParallelJob
                {
                    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
                    public void Execute(int start, int end, int worker) => {{k.Name}}Rows(w.Bytes, xQuantized, xScales, xSums, y, tokens, accumulate, start, end);
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

    /// <summary>
    /// q_proj, k_proj and v_proj as one job over their stacked rows: the input is read (and for Q8_0/Q4_0
    /// quantized) once and the pool is woken once.
    /// </summary>
    public static void WriteQkv(SourceWriter w, ForwardPlan plan)
    {
        ModelSpec s = plan.Spec;
        MatMulKernel q = plan.MatMulFor(s.QueryDim, s.HiddenSize), kv = plan.MatMulFor(s.KvDim, s.HiddenSize);
        string tensor = q.Format == ComputeFormat.F32 ? "WeightTensor" : "PackedTensor";
        string input = NormInputParams(q);
        string inputArgs = q.IsBlockQuantized ? "xQuantized, xScales, xSums" : "xNormed";
        w.Line($$"""
            /// <summary>
            /// q[t] = Wq·n[t], k[t] = Wk·n[t], v[t] = Wv·n[t] with n[t] = RMSNorm(x[t]) ⊙ norm, for t &lt; <paramref name="tokens"/>, split over the
            /// QueryDim + 2·KvDim = {{s.QueryDim + 2 * s.KvDim}} stacked rows. Wq: {{q.Format}} [{{s.QueryDim}}, {{s.HiddenSize}}]; Wk, Wv: {{kv.Format}} [{{s.KvDim}}, {{s.HiddenSize}}];
            /// norm: [{{s.HiddenSize}}]; x: [tokens, {{s.HiddenSize}}]; q: [tokens, {{s.QueryDim}}]; k, v: [tokens, {{s.KvDim}}].
            /// </summary>
            [MethodImpl(MethodImplOptions.AggressiveOptimization)]
            public static void Qkv(WorkerPool pool, WeightTensor norm, {{tensor}} wq, {{tensor}} wk, {{tensor}} wv, float[] x, {{NormInputParams(q)}}, float[] q, float[] k, float[] v, int tokens)
            {
            """);
        WriteNormInput(w, q);
        w.Line($$"""
                var job = new QkvJob(wq, wk, wv, {{inputArgs}}, q, k, v, tokens);
                Run(pool, ref job, (long)tokens * (QueryDim + 2 * KvDim) * HiddenSize, QueryDim + 2 * KvDim, RowGrain);
            }

            private struct QkvJob({{tensor}} wq, {{tensor}} wk, {{tensor}} wv, {{input}}, float[] q, float[] k, float[] v, int tokens) : IParallelJob
            {
                [MethodImpl(MethodImplOptions.AggressiveOptimization)]
                public void Execute(int start, int end, int worker)
                {
                    // Stacked rows: [0, QueryDim) of q, then KvDim rows of k, then KvDim rows of v.
                    if (start < QueryDim)
                        {{q.Name}}Rows({{WeightArgs(q, "wq")}}, {{inputArgs}}, q, tokens, accumulate: false, start, Math.Min(end, QueryDim));
                    if (end > QueryDim && start < QueryDim + KvDim)
                        {{kv.Name}}Rows({{WeightArgs(kv, "wk")}}, {{inputArgs}}, k, tokens, accumulate: false, Math.Max(start, QueryDim) - QueryDim, Math.Min(end, QueryDim + KvDim) - QueryDim);
                    if (end > QueryDim + KvDim)
                        {{kv.Name}}Rows({{WeightArgs(kv, "wv")}}, {{inputArgs}}, v, tokens, accumulate: false, Math.Max(start, QueryDim + KvDim) - QueryDim - KvDim, end - QueryDim - KvDim);
                }
            }
            """);
    }

    /// <summary>The buffers a normalized input goes to: floats for F32 kernels, int8 blocks and their scales for quantized ones.</summary>
    private static string NormInputParams(MatMulKernel k) => k.IsBlockQuantized ? "sbyte[] xQuantized, float[] xScales, int[] xSums" : "float[] xNormed";

    /// <summary>
    /// The input stage of a projection that follows an RMSNorm: every token is normalized once, before the rows are
    /// split across threads; for quantized kernels the norm is fused with the activation quantization.
    /// </summary>
    private static void WriteNormInput(SourceWriter w, MatMulKernel k)
    {
        if (k.IsBlockQuantized)
        {
            w.Line("""
                    // Input stage: RMSNorm fused with quantizing the activations; the normalized floats are never stored.
                    for (int t = 0; t < tokens; t++)
                        RmsNormQuantize(x.AsSpan(t * HiddenSize, HiddenSize), norm.Span, xQuantized.AsSpan(t * HiddenSize, HiddenSize),
                            xScales.AsSpan(t * (HiddenSize / 32), HiddenSize / 32), xSums.AsSpan(t * (HiddenSize / 32), HiddenSize / 32));
                """);
        }
        else
        {
            w.Line("""
                    // Input stage: each token normalized once into xNormed, before the rows are split; every row's dot product reads it.
                    for (int t = 0; t < tokens; t++)
                        RmsNorm(x.AsSpan(t * HiddenSize, HiddenSize), norm.Span, xNormed.AsSpan(t * HiddenSize, HiddenSize));
                """);
        }
    }

    /// <summary>
    /// gate_proj, up_proj, their biases and SwiGLU fused into one job: each thread computes its rows of
    /// both products and applies SiLU(gate) ⊙ up to them while they are still in cache.
    /// </summary>
    public static void WriteGateUp(SourceWriter w, ForwardPlan plan)
    {
        ModelSpec s = plan.Spec;
        MatMulKernel k = plan.MatMulFor(s.IntermediateSize, s.HiddenSize);
        string tensor = k.Format == ComputeFormat.F32 ? "WeightTensor" : "PackedTensor";
        string input = NormInputParams(k);
        string inputArgs = k.IsBlockQuantized ? "xQuantized, xScales, xSums" : "xNormed";
        string biasParams = s.MlpBias ? ", WeightTensor gateBias, WeightTensor upBias" : "";
        string biasArgs = s.MlpBias ? ", gateBias, upBias" : "";
        w.Line($$"""
            /// <summary>
            /// h[t] = SiLU(Wgate·n[t]) ⊙ (Wup·n[t]) with n[t] = RMSNorm(x[t]) ⊙ norm, for t &lt; <paramref name="tokens"/>, gate_proj, up_proj
            /// and SwiGLU in one pass per row range. Wgate, Wup: {{k.Format}} [IntermediateSize={{k.Rows}}, HiddenSize={{k.Cols}}]; norm: [{{k.Cols}}];
            /// x: [tokens, {{k.Cols}}]; h, up: [tokens, {{k.Rows}}] (up is scratch).
            /// </summary>
            [MethodImpl(MethodImplOptions.AggressiveOptimization)]
            public static void GateUp(WorkerPool pool, WeightTensor norm, {{tensor}} gate, {{tensor}} up, float[] x, {{NormInputParams(k)}}, float[] h, float[] upOut, int tokens{{biasParams}})
            {
            """);
        WriteNormInput(w, k);
        w.Line($$"""
                var job = new GateUpJob(gate, up, {{inputArgs}}, h, upOut, tokens{{biasArgs}});
                Run(pool, ref job, {{Work(k, "2L")}}, {{k.Rows}}, RowGrain);
            }

            private struct GateUpJob({{tensor}} gate, {{tensor}} up, {{input}}, float[] h, float[] upOut, int tokens{{biasParams}}) : IParallelJob
            {
                [MethodImpl(MethodImplOptions.AggressiveOptimization)]
                public void Execute(int start, int end, int worker)
                {
                    {{k.Name}}Rows({{WeightArgs(k, "gate")}}, {{inputArgs}}, h, tokens, accumulate: false, start, end);
                    {{k.Name}}Rows({{WeightArgs(k, "up")}}, {{inputArgs}}, upOut, tokens, accumulate: false, start, end);
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

    /// <summary>Attention for a batch of tokens, split by token × KV head across the pool for long contexts.</summary>
    public static void WriteAttentionDispatcher(SourceWriter w, ModelSpec s)
    {
        w.Line("""
            /// <summary>
            /// Causal attention of <paramref name="tokens"/> tokens at positions pos, pos+1, ...: token t attends to cache
            /// positions [0, pos + t]. q, output: [tokens, QueryDim]; keys, values: one layer's cache
            /// [KvHeadCount, MaxContext, HeadDim]; scores: [pool.Threads, GroupSize, MaxContext] scratch, one block per thread.
            /// </summary>
            [MethodImpl(MethodImplOptions.AggressiveOptimization)]
            public static void Attention(WorkerPool pool, float[] q, float[] keys, float[] values, int pos, int tokens, float[] scores, float[] output)
            {
                var job = new AttentionJob(q, keys, values, pos, scores, output);
                Run(pool, ref job, 2L * tokens * (pos + tokens) * QueryDim, tokens * KvHeadCount, grain: 1);
            }

            private struct AttentionJob(float[] q, float[] keys, float[] values, int pos, float[] scores, float[] output) : IParallelJob
            {
                [MethodImpl(MethodImplOptions.AggressiveOptimization)]
                public void Execute(int start, int end, int worker)
                {
                    for (int item = start; item < end; item++)
                    {
                        int t = item / KvHeadCount, kvHead = item % KvHeadCount;
                        AttentionHeads(q.AsSpan(t * QueryDim, QueryDim), keys, values, pos + t + 1, scores.AsSpan(worker * GroupSize * MaxContext, GroupSize * MaxContext),
                            output.AsSpan(t * QueryDim, QueryDim), kvHead, kvHead + 1);
                    }
                }
            }
            """);
    }
}
