using System;

namespace Llama.Compiled
{
    /// <summary>
    /// Compiles the LLaMA-family model described by a Hugging Face <c>config.json</c> into the
    /// annotated partial class: shape constants, <c>Load</c>, <c>CreateSession</c> and a
    /// shape-specialized forward pass are generated at build time.
    /// </summary>
    /// <remarks>
    /// The config file must be an <c>&lt;AdditionalFiles Include="..." /&gt;</c> item of the project.
    /// The path is matched against the AdditionalFiles items: relative to the annotated source
    /// file's folder first, then as a path suffix of an item.
    /// </remarks>
    [AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
    public sealed class LlamaModelAttribute : Attribute
    {
        /// <summary>Creates the attribute for the config file at <paramref name="configPath"/>.</summary>
        /// <param name="configPath">Path of the model's <c>config.json</c> (an AdditionalFiles item).</param>
        public LlamaModelAttribute(string configPath)
        {
            ConfigPath = configPath;
        }

        /// <summary>Path of the model's <c>config.json</c>, as written in the attribute.</summary>
        public string ConfigPath { get; }

        /// <summary>
        /// Caps the context the model is compiled for (KV cache and RoPE table size).
        /// 0 (the default) uses the config's <c>max_position_embeddings</c>.
        /// </summary>
        public int MaxContext { get; set; }

        /// <summary>
        /// The format the generated kernels compute with (default <see cref="WeightFormat.F32"/>).
        /// Matrices whose width is not a multiple of the 32-weight block of Q8_0/Q4_0 stay in F32.
        /// </summary>
        public WeightFormat Weights { get; set; }
    }
}
