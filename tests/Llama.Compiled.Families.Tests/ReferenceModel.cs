using System;
using System.Collections.Generic;

namespace Llama.Compiled.Families.Tests;

/// <summary>
/// An independent forward pass with transformers semantics, in plain loops with double accumulation:
/// RMSNorm, rotate-half RoPE on the Hugging Face layout (with llama3 rope scaling as
/// <c>_compute_llama3_parameters</c>, or linear scaling), grouped-query softmax attention, SwiGLU, the biases the config
/// has, tied or untied classifier. No KV cache: every call recomputes the whole sequence.
/// </summary>
internal sealed class ReferenceModel(ReferenceConfig config, IReadOnlyDictionary<string, float[]> weights)
{
    private readonly ReferenceConfig _c = config;

    private float[] W(string name) => weights.TryGetValue(name, out float[]? w) ? w : throw new KeyNotFoundException(name);

    private float[]? Bias(bool present, string name) => present ? W(name) : null;

    /// <summary>The inverse RoPE frequencies, as transformers computes them (including llama3 scaling).</summary>
    public double[] InverseFrequencies()
    {
        int half = _c.HeadDim / 2;
        var invFreq = new double[half];
        for (int j = 0; j < half; j++)
            invFreq[j] = 1.0 / Math.Pow(_c.RopeTheta, 2.0 * j / _c.HeadDim);
        if (_c.Scaling is { Type: "linear" } linear)
        {
            // transformers.modeling_rope_utils._compute_linear_scaling_rope_parameters: inv_freq /= factor
            for (int j = 0; j < half; j++)
                invFreq[j] /= linear.Factor;
        }
        else if (_c.Scaling is { Type: "llama3" } s)
        {
            // transformers.modeling_rope_utils._compute_llama3_parameters
            double lowFreqWavelen = s.OriginalMaxPositions / s.LowFreqFactor;
            double highFreqWavelen = s.OriginalMaxPositions / s.HighFreqFactor;
            for (int j = 0; j < half; j++)
            {
                double wavelen = 2 * Math.PI / invFreq[j];
                double scaled = wavelen > lowFreqWavelen ? invFreq[j] / s.Factor : invFreq[j];
                bool medium = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen);
                if (medium)
                {
                    double smooth = (s.OriginalMaxPositions / wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
                    scaled = (1 - smooth) * scaled / s.Factor + smooth * scaled;
                }
                invFreq[j] = scaled;
            }
        }
        return invFreq;
    }

    /// <summary>The logits after the last of <paramref name="tokens"/> (positions 0, 1, ...).</summary>
    public double[] Logits(IReadOnlyList<int> tokens)
    {
        int n = tokens.Count;
        int hidden = _c.HiddenSize, headDim = _c.HeadDim, qDim = _c.HeadCount * headDim, kvDim = _c.KvHeadCount * headDim;
        double[] invFreq = InverseFrequencies();
        float[] embed = W("model.embed_tokens.weight");

        var x = new double[n][];
        for (int t = 0; t < n; t++)
        {
            x[t] = new double[hidden];
            for (int i = 0; i < hidden; i++)
                x[t][i] = embed[tokens[t] * hidden + i];
        }

        for (int layer = 0; layer < _c.LayerCount; layer++)
        {
            string p = $"model.layers.{layer}.";
            var q = new double[n][];
            var k = new double[n][];
            var v = new double[n][];
            for (int t = 0; t < n; t++)
            {
                double[] h = RmsNorm(x[t], W(p + "input_layernorm.weight"));
                q[t] = Linear(W(p + "self_attn.q_proj.weight"), Bias(_c.QkvBias, p + "self_attn.q_proj.bias"), h, qDim);
                k[t] = Linear(W(p + "self_attn.k_proj.weight"), Bias(_c.QkvBias, p + "self_attn.k_proj.bias"), h, kvDim);
                v[t] = Linear(W(p + "self_attn.v_proj.weight"), Bias(_c.QkvBias, p + "self_attn.v_proj.bias"), h, kvDim);
                RotateHalf(q[t], _c.HeadCount, t, invFreq);
                RotateHalf(k[t], _c.KvHeadCount, t, invFreq);
            }

            int group = _c.HeadCount / _c.KvHeadCount;
            double scale = 1.0 / Math.Sqrt(headDim);
            for (int t = 0; t < n; t++)
            {
                var attention = new double[qDim];
                for (int head = 0; head < _c.HeadCount; head++)
                {
                    int kvHead = head / group;
                    var scores = new double[t + 1];
                    double max = double.NegativeInfinity;
                    for (int s = 0; s <= t; s++)
                    {
                        double dot = 0;
                        for (int d = 0; d < headDim; d++)
                            dot += q[t][head * headDim + d] * k[s][kvHead * headDim + d];
                        scores[s] = dot * scale;
                        max = Math.Max(max, scores[s]);
                    }
                    double sum = 0;
                    for (int s = 0; s <= t; s++)
                        sum += scores[s] = Math.Exp(scores[s] - max);
                    for (int s = 0; s <= t; s++)
                    {
                        double weight = scores[s] / sum;
                        for (int d = 0; d < headDim; d++)
                            attention[head * headDim + d] += weight * v[s][kvHead * headDim + d];
                    }
                }
                double[] o = Linear(W(p + "self_attn.o_proj.weight"), Bias(_c.OutputBias, p + "self_attn.o_proj.bias"), attention, hidden);
                for (int i = 0; i < hidden; i++)
                    x[t][i] += o[i];
            }

            for (int t = 0; t < n; t++)
            {
                double[] h = RmsNorm(x[t], W(p + "post_attention_layernorm.weight"));
                double[] gate = Linear(W(p + "mlp.gate_proj.weight"), Bias(_c.MlpBias, p + "mlp.gate_proj.bias"), h, _c.IntermediateSize);
                double[] up = Linear(W(p + "mlp.up_proj.weight"), Bias(_c.MlpBias, p + "mlp.up_proj.bias"), h, _c.IntermediateSize);
                for (int i = 0; i < gate.Length; i++)
                    gate[i] = gate[i] / (1 + Math.Exp(-gate[i])) * up[i];
                double[] down = Linear(W(p + "mlp.down_proj.weight"), Bias(_c.MlpBias, p + "mlp.down_proj.bias"), gate, hidden);
                for (int i = 0; i < hidden; i++)
                    x[t][i] += down[i];
            }
        }

        double[] final = RmsNorm(x[n - 1], W("model.norm.weight"));
        return Linear(_c.Tied ? embed : W("lm_head.weight"), null, final, _c.VocabSize);
    }

    private double[] RmsNorm(double[] x, float[] weight)
    {
        double sumSquares = 0;
        foreach (double value in x)
            sumSquares += value * value;
        double inverse = 1.0 / Math.Sqrt(sumSquares / x.Length + _c.RmsNormEps);
        var y = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
            y[i] = weight[i] * (x[i] * inverse);
        return y;
    }

    /// <summary>y = W x + b for a row-major W [rows, x.Length] (nn.Linear's layout).</summary>
    private static double[] Linear(float[] w, float[]? bias, double[] x, int rows)
    {
        int cols = x.Length;
        if (w.Length != rows * cols)
            throw new ArgumentException($"weight has {w.Length} elements, expected [{rows}, {cols}]");
        var y = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            double sum = bias is null ? 0 : bias[r];
            for (int i = 0; i < cols; i++)
                sum += (double)w[r * cols + i] * x[i];
            y[r] = sum;
        }
        return y;
    }

    /// <summary>transformers' apply_rotary_pos_emb: x * cos + rotate_half(x) * sin, per head, halves (j, j + d/2).</summary>
    private void RotateHalf(double[] x, int heads, int position, double[] invFreq)
    {
        int half = _c.HeadDim / 2;
        for (int head = 0; head < heads; head++)
        {
            int b = head * _c.HeadDim;
            for (int j = 0; j < half; j++)
            {
                double angle = position * invFreq[j];
                double cos = Math.Cos(angle), sin = Math.Sin(angle);
                double x1 = x[b + j], x2 = x[b + j + half];
                x[b + j] = x1 * cos - x2 * sin;
                x[b + j + half] = x2 * cos + x1 * sin;
            }
        }
    }
}
