use std::path::PathBuf;

use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {
    /// The .lofi model.
    model: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let model = lofi::Model::load(&args.model, Default::default())?;
    let cfg = model.config();
    // Multiply-adds of the products per output pixel, as loaded (layers folded where that saves
    // work) and as stored.
    let (flops, stored_flops) = (model.pixel_net().flops_per_pixel(), model.net().flops_per_pixel());
    if args.json {
        let info = serde_json::json!({
            "path": args.model.display().to_string(),
            "config": cfg,
            "parameters": model.parameter_count(),
            "training_resolution": [cfg.image_size, cfg.image_size],
            "noise_level_aware": cfg.noise_level.is_some(),
            "flops_per_pixel": flops,
            "stored_flops_per_pixel": stored_flops,
            "notes": model.notes(),
        });
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    println!("model:               {}", args.model.display());
    println!("parameters:          {}", model.parameter_count());
    println!("training resolution: {0} x {0}", cfg.image_size);
    println!(
        "channels:            {} in, {} out{}",
        cfg.c_in,
        cfg.c_out,
        if cfg.c_in == 2 { " (input is one complex channel)" } else { "" }
    );
    println!(
        "network:             {:?}, {} hidden layers of {}",
        cfg.network, cfg.num_layers, cfg.hidden_dim
    );
    println!(
        "geometry:            {:?}, {} rings x {} angles, learned: {}",
        cfg.patch_shape, cfg.n, cfg.m, cfg.learned_geo
    );
    println!(
        "fourier filter:      {}",
        if cfg.fourier_filtering { format!("yes, {} per channel", cfg.num_filters) } else { "no".into() }
    );
    println!("residual learning:   {}", cfg.residual_learning);
    println!(
        "CCPG:                {}",
        if cfg.ccpg { format!("{} blocks", cfg.n_deform) } else { "no".into() }
    );
    println!("INR coordinates:     {}", cfg.coord_deform);
    match &cfg.noise_level {
        Some(r) => println!(
            "noise level:         an input (--sigma); training range [{}, {}] ({:.1}/255 to {:.1}/255)",
            r.sigma_min,
            r.sigma_max,
            r.sigma_min * 255.0,
            r.sigma_max * 255.0
        ),
        None => println!("noise level:         fixed (the model takes no --sigma)"),
    }
    if flops < stored_flops {
        println!(
            "work per pixel:      {:.3} MFLOP (the per-angle MLPs' last layer folded into the mixer at load; \
             {:.3} as stored)",
            flops / 1e6,
            stored_flops / 1e6
        );
    } else {
        println!("work per pixel:      {:.3} MFLOP", flops / 1e6);
    }
    if let Some(notes) = model.notes() {
        println!("notes:               {notes}");
    }
    println!("configuration JSON:  {}", cfg.to_json());
    Ok(())
}
