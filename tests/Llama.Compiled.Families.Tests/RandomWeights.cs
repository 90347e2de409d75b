using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;

namespace Llama.Compiled.Families.Tests;

/// <summary>One F32 tensor: its Hugging Face name, shape and values.</summary>
internal sealed record Tensor(string Name, int[] Shape, float[] Values);

/// <summary>
/// Seeded random weights for a config, under the Hugging Face tensor names, exactly the set the
/// config implies (biases only where it has them, lm_head only when untied), and a minimal
/// safetensors writer for them.
/// </summary>
internal static class RandomWeights
{
    public static List<Tensor> Create(ReferenceConfig c, int seed)
    {
        var rng = new Random(seed);
        var tensors = new List<Tensor>();
        int qDim = c.HeadCount * c.HeadDim, kvDim = c.KvHeadCount * c.HeadDim;

        float[] Uniform(int count, double center, double amplitude)
        {
            var values = new float[count];
            for (int i = 0; i < count; i++)
                values[i] = (float)(center + amplitude * (2 * rng.NextDouble() - 1));
            return values;
        }
        void Matrix(string name, int rows, int cols, double gain = 1) =>
            tensors.Add(new Tensor(name, [rows, cols], Uniform(rows * cols, 0, gain * Math.Sqrt(3.0 / cols))));
        void Vector(string name, int length, double center, double amplitude) =>
            tensors.Add(new Tensor(name, [length], Uniform(length, center, amplitude)));

        tensors.Add(new Tensor("model.embed_tokens.weight", [c.VocabSize, c.HiddenSize], Uniform(c.VocabSize * c.HiddenSize, 0, 1)));
        for (int layer = 0; layer < c.LayerCount; layer++)
        {
            string p = $"model.layers.{layer}.";
            Vector(p + "input_layernorm.weight", c.HiddenSize, 1, 0.3);
            // Larger q/k so that attention is far from uniform and RoPE visibly matters.
            Matrix(p + "self_attn.q_proj.weight", qDim, c.HiddenSize, 2);
            Matrix(p + "self_attn.k_proj.weight", kvDim, c.HiddenSize, 2);
            Matrix(p + "self_attn.v_proj.weight", kvDim, c.HiddenSize);
            // Larger o/down so the layers, not the (tied) embedding, decide the next token.
            Matrix(p + "self_attn.o_proj.weight", c.HiddenSize, qDim, 2);
            if (c.QkvBias)
            {
                Vector(p + "self_attn.q_proj.bias", qDim, 0, 0.5);
                Vector(p + "self_attn.k_proj.bias", kvDim, 0, 0.5);
                Vector(p + "self_attn.v_proj.bias", kvDim, 0, 0.5);
            }
            if (c.OutputBias)
                Vector(p + "self_attn.o_proj.bias", c.HiddenSize, 0, 0.5);
            Vector(p + "post_attention_layernorm.weight", c.HiddenSize, 1, 0.3);
            Matrix(p + "mlp.gate_proj.weight", c.IntermediateSize, c.HiddenSize, 2);
            Matrix(p + "mlp.up_proj.weight", c.IntermediateSize, c.HiddenSize);
            Matrix(p + "mlp.down_proj.weight", c.HiddenSize, c.IntermediateSize, 2);
            if (c.MlpBias)
            {
                Vector(p + "mlp.gate_proj.bias", c.IntermediateSize, 0, 0.5);
                Vector(p + "mlp.up_proj.bias", c.IntermediateSize, 0, 0.5);
                Vector(p + "mlp.down_proj.bias", c.HiddenSize, 0, 0.5);
            }
        }
        Vector("model.norm.weight", c.HiddenSize, 1, 0.3);
        if (!c.Tied)
            Matrix("lm_head.weight", c.VocabSize, c.HiddenSize, 2);
        return tensors;
    }

    /// <summary>
    /// Writes <c>model.safetensors</c>: the 8-byte little-endian header length, the JSON header (padded
    /// with spaces to a multiple of 8 bytes), then the tensors' little-endian F32 data back to back.
    /// </summary>
    public static void WriteSafetensors(string path, IReadOnlyList<Tensor> tensors)
    {
        var header = new StringBuilder("{\"__metadata__\":{\"format\":\"pt\"}");
        long offset = 0;
        foreach (Tensor t in tensors)
        {
            long end = offset + 4L * t.Values.Length;
            header.Append(CultureInfo.InvariantCulture,
                $",\"{t.Name}\":{{\"dtype\":\"F32\",\"shape\":[{string.Join(",", t.Shape)}],\"data_offsets\":[{offset},{end}]}}");
            offset = end;
        }
        header.Append('}');
        while (Encoding.UTF8.GetByteCount(header.ToString()) % 8 != 0)
            header.Append(' ');
        byte[] json = Encoding.UTF8.GetBytes(header.ToString());

        var file = new byte[8 + json.Length + offset];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)json.Length);
        json.CopyTo(file, 8);
        int at = 8 + json.Length;
        foreach (Tensor t in tensors)
        {
            foreach (float value in t.Values)
            {
                BinaryPrimitives.WriteSingleLittleEndian(file.AsSpan(at), value);
                at += 4;
            }
        }
        File.WriteAllBytes(path, file);
    }

    public static Dictionary<string, float[]> ByName(IEnumerable<Tensor> tensors) => tensors.ToDictionary(t => t.Name, t => t.Values, StringComparer.Ordinal);
}
